//! A pickle reader for the one thing PyTorch checkpoints hold: a dict of tensors.
//!
//! It interprets pickle opcodes as data and never executes code: the only globals it accepts are
//! the handful that build an (ordered) dict of tensors, and each one is rebuilt by a fixed Rust
//! function. Anything else is refused, so a malicious checkpoint cannot run anything.

use std::collections::HashMap;

/// A value on the pickle stack.
#[derive(Debug, Clone)]
pub enum Value {
    None,
    /// A bool, float or bytes value: present in checkpoints, never needed to rebuild tensors.
    Opaque,
    Int(i128),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(Global),
    /// A storage reference from a persistent id: (storage class, key).
    Storage {
        class: String,
        key: String,
    },
    Tensor(TensorRef),
    Mark,
}

/// The globals a tensor dict needs; any other is refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildParameter,
    Storage(&'static str),
}

/// A tensor view into a storage, as `torch._utils._rebuild_tensor_v2` describes it.
#[derive(Debug, Clone)]
pub struct TensorRef {
    pub storage_class: String,
    pub storage_key: String,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

fn global(module: &str, name: &str) -> Result<Global, String> {
    const STORAGES: [&str; 4] = [
        "FloatStorage",
        "HalfStorage",
        "BFloat16Storage",
        "DoubleStorage",
    ];
    match (module, name) {
        ("collections", "OrderedDict") => Ok(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2") => Ok(Global::RebuildTensor),
        ("torch._utils", "_rebuild_parameter") => Ok(Global::RebuildParameter),
        ("torch", storage) => STORAGES
            .iter()
            .find(|s| **s == storage)
            .map(|s| Global::Storage(s))
            .ok_or_else(|| format!("unsupported tensor storage torch.{storage}")),
        _ => Err(format!(
            "refusing pickle global {module}.{name}: only tensor dicts are read"
        )),
    }
}

/// Reads one pickle starting at `data[0]`; returns the value and the bytes consumed.
pub fn load(data: &[u8]) -> Result<(Value, usize), String> {
    Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
    }
    .run()
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: HashMap<u32, Value>,
}

impl Machine<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or("pickle ends early")?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("pickle ends early")?;
        let text = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.pos += end + 1;
        Ok(text)
    }
    fn string(&mut self, len: usize) -> Result<Value, String> {
        let bytes = self.take(len)?;
        Ok(Value::Str(
            String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())?,
        ))
    }
    fn pop(&mut self) -> Result<Value, String> {
        self.stack
            .pop()
            .ok_or_else(|| "pickle stack underflow".to_string())
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let mark = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or("pickle MARK missing")?;
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items)
    }
    fn top_mut(&mut self) -> Result<&mut Value, String> {
        self.stack
            .last_mut()
            .ok_or_else(|| "pickle stack underflow".to_string())
    }
    fn set_items(&mut self, items: Vec<Value>) -> Result<(), String> {
        let Value::Dict(dict) = self.top_mut()? else {
            return Err("SETITEMS on a non-dict".into());
        };
        let mut items = items.into_iter();
        while let (Some(k), Some(v)) = (items.next(), items.next()) {
            dict.push((k, v));
        }
        Ok(())
    }
    fn append(&mut self, items: Vec<Value>) -> Result<(), String> {
        match self.top_mut()? {
            Value::List(list) => {
                list.extend(items);
                Ok(())
            }
            _ => Err("APPEND on a non-list".into()),
        }
    }

    fn run(mut self) -> Result<(Value, usize), String> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?;
                } // PROTO
                0x95 => {
                    self.take(8)?;
                } // FRAME
                b'.' => {
                    let value = self.pop()?;
                    return Ok((value, self.pos));
                }
                b'(' => self.stack.push(Value::Mark),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Opaque),
                0x89 => self.stack.push(Value::Opaque),
                b'J' => {
                    let v = i32::from_le_bytes(self.take(4)?.try_into().expect("4"));
                    self.stack.push(Value::Int(v as i128))
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i128))
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v as i128))
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let bytes = self.take(n)?;
                    if n > 16 {
                        return Err("integer too large".into());
                    }
                    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
                    let mut buf = [if negative { 0xff } else { 0 }; 16];
                    buf[..n].copy_from_slice(bytes);
                    self.stack.push(Value::Int(i128::from_le_bytes(buf)))
                }
                b'G' => {
                    self.take(8)?;
                    self.stack.push(Value::Opaque)
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v)
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v)
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v)
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    let v = self.string(n)?;
                    self.stack.push(v)
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    self.take(n)?;
                    self.stack.push(Value::Opaque)
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    self.take(n)?;
                    self.stack.push(Value::Opaque)
                }
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items))
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err("pickle stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items))
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(items))
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Dict(Vec::new()));
                    self.set_items(items)?
                }
                b'a' => {
                    let item = self.pop()?;
                    self.append(vec![item])?
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.set_items(vec![key, value])?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    self.memo_put(i)?
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?
                }
                0x94 => {
                    let i = self.memo.len() as u32;
                    self.memo_put(i)?
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    self.memo_get(i)?
                }
                b'j' => {
                    let i = self.u32()?;
                    self.memo_get(i)?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(global(&module, &name)?))
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return Err("STACK_GLOBAL needs two strings".into());
                    };
                    self.stack.push(Value::Global(global(&module, &name)?))
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.stack.push(persistent_storage(pid)?)
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.stack.push(reduce(callable, args)?)
                }
                b'b' => {
                    // BUILD sets attributes (an OrderedDict's `_metadata`): irrelevant to tensors.
                    self.pop()?;
                }
                other => return Err(format!("unsupported pickle opcode 0x{other:02x}")),
            }
        }
    }

    fn memo_put(&mut self, index: u32) -> Result<(), String> {
        let top = self.stack.last().ok_or("pickle stack underflow")?.clone();
        self.memo.insert(index, top);
        Ok(())
    }
    fn memo_get(&mut self, index: u32) -> Result<(), String> {
        let value = self.memo.get(&index).ok_or("pickle memo miss")?.clone();
        self.stack.push(value);
        Ok(())
    }
}

/// `('storage', torch.FloatStorage, key, location, numel[, view])` → a storage reference.
fn persistent_storage(pid: Value) -> Result<Value, String> {
    let Value::Tuple(items) = pid else {
        return Err("persistent id is not a tuple".into());
    };
    match items.as_slice() {
        [Value::Str(kind), Value::Global(Global::Storage(class)), Value::Str(key), ..]
            if kind == "storage" =>
        {
            Ok(Value::Storage {
                class: class.to_string(),
                key: key.clone(),
            })
        }
        _ => Err("unsupported persistent id".into()),
    }
}

fn usizes(value: &Value) -> Result<Vec<usize>, String> {
    let Value::Tuple(items) = value else {
        return Err("tensor size or stride is not a tuple".into());
    };
    items
        .iter()
        .map(|v| match v {
            Value::Int(i) if *i >= 0 => Ok(*i as usize),
            _ => Err("tensor size or stride is not a non-negative integer".to_string()),
        })
        .collect()
}

fn reduce(callable: Value, args: Value) -> Result<Value, String> {
    let Value::Tuple(args) = args else {
        return Err("REDUCE arguments are not a tuple".into());
    };
    match callable {
        Value::Global(Global::OrderedDict) => Ok(Value::Dict(Vec::new())),
        Value::Global(Global::RebuildParameter) => args
            .into_iter()
            .next()
            .ok_or_else(|| "empty parameter".to_string()),
        Value::Global(Global::RebuildTensor) => match args.as_slice() {
            [Value::Storage { class, key }, Value::Int(offset), size, stride, ..] => {
                Ok(Value::Tensor(TensorRef {
                    storage_class: class.clone(),
                    storage_key: key.clone(),
                    offset: usize::try_from(*offset).map_err(|e| e.to_string())?,
                    shape: usizes(size)?,
                    stride: usizes(stride)?,
                }))
            }
            _ => Err("unexpected _rebuild_tensor_v2 arguments".into()),
        },
        _ => Err("REDUCE of something other than a tensor or dict".into()),
    }
}
