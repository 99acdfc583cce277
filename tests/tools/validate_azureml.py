"""Validates the Azure ML job definitions offline: azure-ai-ml's load_job parses each YAML and
validates it against the SDK's schemas (a bad key, type or reference raises), and the
environment's Dockerfile is parsed and checked for the stages the job relies on.

Usage: python3 validate_azureml.py JOBSCRIPTS_DIR; prints one line per file, exits 1 on failure.
"""
import pathlib
import sys

from azure.ai.ml import load_job
from azure.ai.ml.entities import Command, PipelineJob
from dockerfile_parse import DockerfileParser

root = pathlib.Path(sys.argv[1]) / "azureml"

job = load_job(root / "job.yml")
assert isinstance(job, Command), type(job)
assert job.distribution.type == "mpi" and job.distribution.process_count_per_instance >= 1
assert job.resources.instance_count >= 1
assert job.inputs["video"].type == "uri_file" and job.outputs["result"].type == "uri_folder"
assert job.command.startswith("stylemill run ${{inputs.video}}")
print(f"job.yml: command job, {job.resources.instance_count} nodes x {job.distribution.process_count_per_instance} MPI processes")

pipeline = load_job(root / "pipeline.yml")
assert isinstance(pipeline, PipelineJob), type(pipeline)
step = pipeline.jobs["stylize"]
assert step.distribution.type == "mpi", step.distribution
assert step.resources.instance_count >= 1
print(f"pipeline.yml: pipeline job, step `stylize` is an MPI job on {step.resources.instance_count} nodes")

parser = DockerfileParser(path=str(root / "environment" / "Dockerfile"))
instructions = [i["instruction"] for i in parser.structure if i["instruction"] != "COMMENT"]
stages = [i["value"] for i in parser.structure if i["instruction"] == "FROM"]
assert instructions[0] in ("ARG", "FROM"), instructions[0]
assert len(stages) == 2 and stages[0].endswith("AS build"), stages
assert any("cargo build --release" in i["value"] for i in parser.structure if i["instruction"] == "RUN")
assert any("/usr/local/bin/stylemill" in i["value"] for i in parser.structure if i["instruction"] == "COPY")
# The image checks itself at build time: a broken ffmpeg fails the build, not the job.
assert any("stylemill doctor" in i["value"] for i in parser.structure if i["instruction"] == "RUN")
print(f"Dockerfile: {len(instructions)} instructions, stages {stages}")
