//! The bodies of fuzz targets on the host's side of the node boundary: what a node hands the
//! host (node descriptions, output values, log text, UI documents) built from untrusted bytes
//! and put through every check and conversion the host applies to it. Shared by `fuzz/`
//! (cargo fuzz, libFuzzer) and the bounded run in `tests/e2e/fuzz_parsers.rs` on stable Rust.
//! None of them may panic, allocate without bound, or hang.

use crate::caps::embedder::validate_ui;
use crate::node::info::{Direction, NodeInfo, Pin, Range, check_descriptions};
use crate::node::pins::{check_inputs, check_outputs};
use crate::node::value::{DataType, Field, Value};
use crate::output::log::{Level, RunLog, Source};
use crate::policy::allowlist::AllowedHosts;

/// Reads structure out of fuzz bytes; past the end every read gives zero or empty.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((first, rest)) => {
                self.0 = rest;
                *first
            }
            None => 0,
        }
    }

    /// A count below `bound`.
    fn count(&mut self, bound: u8) -> usize {
        usize::from(self.byte() % bound.max(1))
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |value, _| value << 8 | u64::from(self.byte()))
    }

    fn text(&mut self) -> String {
        let len = self.count(64).min(self.0.len());
        let (text, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8_lossy(text).into_owned()
    }

    fn value(&mut self) -> Value {
        match self.byte() % 7 {
            0 => Value::Null,
            1 => Value::Boolean(self.byte() & 1 == 1),
            2 => Value::Integer(self.u64() as i64),
            3 => Value::Float(f64::from_bits(self.u64())),
            4 => Value::Text(self.text()),
            5 => Value::Bytes(self.text().into_bytes()),
            _ => Value::Json(self.text()),
        }
    }

    fn data_type(&mut self) -> DataType {
        [
            DataType::Any,
            DataType::Boolean,
            DataType::Integer,
            DataType::Float,
            DataType::Text,
            DataType::Bytes,
            DataType::Json,
        ][self.count(7)]
    }

    fn pin(&mut self) -> Pin {
        let direction = match self.byte() & 1 {
            0 => Direction::Input,
            _ => Direction::Output,
        };
        Pin {
            name: self.text(),
            description: self.text(),
            direction,
            data_type: self.data_type(),
            default: (self.byte() & 1 == 1).then(|| self.value()),
            valid_values: (0..self.count(4)).map(|_| self.value()).collect(),
            range: (self.byte() & 1 == 1).then(|| Range {
                min: f64::from_bits(self.u64()),
                max: f64::from_bits(self.u64()),
            }),
        }
    }

    fn node(&mut self) -> NodeInfo {
        NodeInfo {
            name: self.text(),
            friendly_name: self.text(),
            description: self.text(),
            category: self.text(),
            pins: (0..self.count(8)).map(|_| self.pin()).collect(),
        }
    }

    fn fields(&mut self) -> Vec<Field> {
        (0..self.count(8))
            .map(|_| Field::new(self.text(), self.value()))
            .collect()
    }
}

/// Node descriptions and the values a node returns: the description bounds, the output
/// checks, the input checks (an embedder may feed outputs to the next node), and the JSON
/// forms `inspect` and `run --json` print.
pub fn node_boundary(data: &[u8]) {
    let mut input = Input(data);
    let nodes: Vec<NodeInfo> = (0..1 + input.count(4)).map(|_| input.node()).collect();
    let _ = check_descriptions(&nodes);
    let outputs = input.fields();
    for node in &nodes {
        let _ = node.to_json();
        let _ = check_outputs(node, &outputs);
        let _ = check_inputs(node, outputs.clone());
    }
    for field in &outputs {
        let _ = field.value.to_json();
        let _ = field.value.size();
    }
}

/// Text a node logs or prints, and UI documents it renders.
pub fn node_text(data: &[u8]) {
    let log = RunLog::new(4096);
    let text = String::from_utf8_lossy(data);
    log.push(Level::Info, Source::Log, &text);
    log.write_stream(Source::Stdout, data);
    log.flush();
    for record in log.records() {
        assert!(
            !record.message.chars().any(char::is_control),
            "a control character passed the escaping: {record:?}"
        );
    }
    if let Ok(document) = std::str::from_utf8(data) {
        let allowed = AllowedHosts::parse(&["example.com"]).unwrap_or_default();
        let _ = validate_ui(document, &allowed);
    }
}
