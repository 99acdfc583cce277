#!/usr/bin/env bash
# Builds target/gpu-bundle.tar.xz: everything scripts/gpu-check.sh needs on a bare GPU machine
# (x86-64 with the NVIDIA driver, the CUDA 13 toolkit and Python with PyTorch, and no Rust, MPI,
# ffmpeg or network), where files arrive only as a copy of the project tree:
# - stylemill, the GPU test binary (tests/cuda.rs) and the GPU benchmark (benches/gpu.rs), run
#   through this machine's dynamic loader with this machine's libraries (glibc included), all
#   in the bundle, so that nothing of the GPU machine's own userland is needed but the driver;
# - OpenMPI's mpirun with its plugins, relocated into the bundle (OPAL_PREFIX and friends), for
#   the test of two ranks sharing one GPU;
# - ffmpeg and ffprobe 5.1 built here, static, with only what stylemill and the tests use.
# The shipped styles embedded in each executable are taken out (scripts/bundle_weights.py): the
# tree's models/ holds them, and gpu-check.sh puts them back.
# Prints what travels (tree plus bundle), which must stay under 60 MiB, and fails above it.
#
# Usage: scripts/gpu-bundle.sh   (then run with carry ["target/gpu-bundle.tar.xz"])
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/gpu-bundle
stage=$out/stylemill-gpu
archive=target/gpu-bundle.tar.xz
limit_mib=60
multiarch=/usr/lib/x86_64-linux-gnu

# ffmpeg, static, from Debian's source of its own ffmpeg, with libx264 from libx264-dev.
ffmpeg_version=5.1.9
ffmpeg_sha256=d9b593bb2ba93d4b50f74177e0cdcd41747e708596367deed0c30348a71dd176
build_ffmpeg() {
    local dir=$out/ffmpeg
    [ -x "$dir/bin/ffprobe" ] && return
    local tarball=$out/ffmpeg_$ffmpeg_version.orig.tar.xz
    if [ ! -f "$tarball" ]; then
        mkdir -p "$out"
        curl -fsS -o "$tarball" "http://deb.debian.org/debian/pool/main/f/ffmpeg/ffmpeg_$ffmpeg_version.orig.tar.xz"
    fi
    echo "$ffmpeg_sha256  $tarball" | sha256sum --check --quiet
    rm -rf "$dir" && mkdir -p "$dir/src"
    tar -xf "$tarball" -C "$dir/src" --strip-components=1
    (
        cd "$dir/src"
        ./configure --disable-everything --disable-autodetect --disable-network --disable-doc \
            --disable-debug --disable-ffplay --enable-gpl --enable-libx264 --enable-static \
            --disable-shared --extra-ldflags=-static --pkg-config-flags=--static --enable-zlib \
            --enable-protocol=file,pipe \
            --enable-demuxer=mov,matroska,nut,rawvideo,image2,image2pipe,h264,hevc,aac,ivf,mp3,wav,ogg,concat \
            --enable-muxer=mp4,mov,ipod,matroska,webm,nut,rawvideo,null,image2 \
            --enable-decoder=h264,hevc,vp8,vp9,mpeg4,mpeg2video,aac,mp3,opus,vorbis,flac,pcm_s16le,pcm_s24le,rawvideo,png,mjpeg,wrapped_avframe \
            --enable-encoder=libx264,aac,rawvideo,png,wrapped_avframe,pcm_s16le \
            --enable-parser=h264,hevc,vp8,vp9,aac,opus,vorbis,mpegaudio,mpeg4video,mpegvideo,png,mjpeg,flac \
            --enable-bsf=h264_mp4toannexb,hevc_mp4toannexb,aac_adtstoasc,vp9_superframe,extract_extradata,null,setts \
            --enable-filter=showinfo,scale,bwdif,yadif,setpts,asetpts,settb,asettb,setparams,setsar,setdar,format,aformat,colorspace,transpose,hflip,vflip,null,anull,aresample,testsrc2,testsrc,sine,anullsrc,fps,trim,atrim,select,aselect,copy,pad,crop,split,asplit,concat,color,tpad \
            --enable-indev=lavfi >/dev/null
        make -j"$(nproc)" >/dev/null 2>build.log || { tail -n 40 build.log >&2; exit 1; }
    )
    mkdir -p "$dir/bin"
    cp "$dir/src/ffmpeg" "$dir/src/ffprobe" "$dir/bin/"
    strip "$dir/bin/ffmpeg" "$dir/bin/ffprobe"
    rm -rf "$dir/src"
}

# Without the `temporal` feature: OpenCV and what it loads would add 10 MiB to the bundle, and
# nothing the GPU machine runs needs optical flow.
features=(--no-default-features --features mpi)

# The executable of a test or bench target (`built test cuda`), built as `cargo test --release`
# and `cargo bench` build them; cargo's JSON messages name it.
built() {
    local command=$1 target=$2 profile=()
    [ "$command" = test ] && profile=(--release)
    cargo "$command" "${profile[@]}" "${features[@]}" --"$command" "$target" --no-run --quiet --message-format=json | python3 -c '
import json, sys
for message in map(json.loads, sys.stdin):
    if message.get("reason") == "compiler-artifact" and message.get("executable") and message["target"]["name"] == sys.argv[1]:
        print(message["executable"])' "$target"
}

build_ffmpeg
cargo build --release --quiet "${features[@]}" --bin stylemill
cuda_tests=$(built test cuda)
gpu_bench=$(built bench gpu)

rm -rf "$stage" && mkdir -p "$stage/bin" "$stage/elf" "$stage/lib" "$stage/mpi/lib" "$stage/mpi/share" "$stage/mpi/etc"
cp target/release/stylemill "$stage/elf/stylemill"
cp "$cuda_tests" "$stage/elf/cuda-tests"
cp "$gpu_bench" "$stage/elf/gpu-bench"
cp /usr/bin/orterun "$stage/elf/mpirun"
strip "$stage"/elf/*
cp "$out/ffmpeg/bin/ffmpeg" "$out/ffmpeg/bin/ffprobe" "$stage/bin/"

# OpenMPI's and PMIx's plugins and data, without those for fabrics a single node does not use
# (their libraries are large).
cp -a "$multiarch/openmpi/lib/openmpi3" "$stage/mpi/lib/openmpi3"
cp -a "$multiarch/pmix2/lib/pmix" "$stage/mpi/lib/pmix"
cp -a "$multiarch/pmix2/share/pmix" "$stage/mpi/share/pmix"
cp -a /usr/share/openmpi "$stage/mpi/share/openmpi"
cp -a /etc/openmpi "$stage/mpi/etc/openmpi"
for plugin in "$stage"/mpi/lib/openmpi3/*.so "$stage"/mpi/lib/pmix/*.so; do
    if [[ "$(ldd "$plugin")" =~ lib(fabric|ucp|ucs|uct|ibverbs|rdmacm|psm|infinipath|oshmem|nl-) ]]; then
        rm "$plugin"
    fi
done

# Every library the executables and plugins link, as this machine resolves them, plus glibc's
# and the C++ runtime's libraries that the GPU machine's driver and NVRTC link (they load into
# the same process, and the GPU machine's own libstdc++ may need a newer glibc than the bundle's:
# NVRTC's builtins library links libstdc++).
{
    for file in "$stage"/elf/* "$stage"/mpi/lib/*/*.so; do
        ldd "$file" | awk '/=> \// { print $3 }'
    done
    for library in libc.so.6 libm.so.6 libdl.so.2 libpthread.so.0 librt.so.1 libresolv.so.2 libstdc++.so.6 libgcc_s.so.1; do
        echo "$multiarch/$library"
    done
} | sort -u | while read -r library; do
    cp -L "$library" "$stage/lib/$(basename "$library")"
done
cp -L "$multiarch/ld-linux-x86-64.so.2" "$stage/lib/ld-linux-x86-64.so.2"

# Each executable runs through the bundle's loader, with OpenMPI and PMIx relocated into it.
# mpirun called by its absolute path would act as if given --prefix and put the bundle's lib/ on
# its processes' LD_LIBRARY_PATH, where the GPU machine's own programs (/bin/sh, running each
# rank's wrapper) would load the bundle's older glibc and fail: --noprefix keeps it off.
for program in "$stage"/elf/*; do
    name=$(basename "$program")
    options=""
    [ "$name" = mpirun ] && options="--noprefix "
    cat >"$stage/bin/$name" <<SCRIPT
#!/bin/sh
# The bundle's $name, through the bundle's own dynamic loader and libraries.
bin="\${0%/*}"
bundle="\$(cd "\$bin/.." && pwd)"
export OPAL_PREFIX="\$bundle/mpi" OPAL_BINDIR="\$bundle/bin" OPAL_LIBDIR="\$bundle/mpi/lib"
export OPAL_PKGLIBDIR="\$bundle/mpi/lib/openmpi3" OPAL_PKGDATADIR="\$bundle/mpi/share/openmpi"
export OPAL_SYSCONFDIR="\$bundle/mpi/etc/openmpi" PMIX_INSTALL_PREFIX="\$bundle/mpi"
export PMIX_MCA_mca_base_component_path="\$bundle/mpi/lib/pmix"
# One node, started by mpirun itself: no ssh or rsh agent is needed (or present).
export OMPI_MCA_plm=isolated
# The GPU machine's own library path comes after the bundle's, for its driver (libcuda.so.1).
exec "\$bundle/lib/ld-linux-x86-64.so.2" --library-path "\$bundle/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" --argv0 "\$0" "\$bundle/elf/$name" $options"\$@"
SCRIPT
    chmod +x "$stage/bin/$name"
done

python3 scripts/bundle_weights.py strip "$stage" models
tar -C "$out" -cf - stylemill-gpu | xz -9e -T"$(nproc)" >"$archive.partial"
mv "$archive.partial" "$archive"

# What travels: the tree as the device tool copies it (tracked files and untracked ones git
# does not ignore) and the bundle.
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- | tail -n 1 | cut -f 1)
bundle_bytes=$(stat -c %s "$archive")
total_bytes=$((tree_bytes + bundle_bytes))
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "tree $(mib "$tree_bytes") + bundle $(mib "$bundle_bytes") ($archive) = $(mib "$total_bytes") (limit $limit_mib MiB)"
if [ "$total_bytes" -ge $((limit_mib * 1048576)) ]; then
    echo "error: the tree and the bundle together exceed $limit_mib MiB; the GPU machine takes at most 64 MiB" >&2
    exit 1
fi
