//! Rendering API answers as text or JSON.

use serde_json::Value;

use super::Output;

/// An id value as plain text (ids may be numbers or strings).
pub(crate) fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Print an API answer: JSON as is, or a readable text rendering.
pub(crate) fn print(out: Output, v: &Value) {
    match out {
        Output::Json => {
            if !v.is_null() {
                println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
            }
        }
        Output::Text => {
            let mut s = String::new();
            text(v, 0, &mut s);
            print!("{s}");
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn text(v: &Value, indent: usize, out: &mut String) {
    let pad = "  ".repeat(indent);
    match v {
        Value::Null => {}
        Value::Object(m) => {
            for (k, val) in m {
                match val {
                    Value::Object(inner) if !inner.is_empty() && k != "labels" => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        text(val, indent + 1, out);
                    }
                    Value::Array(items) if items.iter().any(Value::is_object) => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        text(val, indent + 1, out);
                    }
                    Value::Array(items) => {
                        let parts: Vec<String> = items.iter().map(scalar).collect();
                        out.push_str(&format!("{pad}{k}: {}\n", parts.join(", ")));
                    }
                    Value::Object(inner) => {
                        let parts: Vec<String> = inner
                            .iter()
                            .map(|(a, b)| format!("{a}={}", scalar(b)))
                            .collect();
                        out.push_str(&format!("{pad}{k}: {}\n", parts.join(",")));
                    }
                    other => out.push_str(&format!("{pad}{k}: {}\n", scalar(other))),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&format!("{pad}--\n"));
                }
                text(item, indent, out);
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

/// Report a failed command: `error: …` on stderr, or with `--output json` the error document
/// `{"error":{"code","message","status"}}` on stdout (so a script reads one JSON answer from
/// stdout either way; the exit status is non-zero).
pub(crate) fn error(out: Output, e: &super::ApiError) {
    use super::ApiError;
    match out {
        Output::Text => eprintln!("error: {e}"),
        Output::Json => {
            let (code, message, status) = match e {
                ApiError::Api {
                    status,
                    code,
                    message,
                } => (code.as_str(), message.clone(), Some(status.as_u16())),
                ApiError::Transport(m) => ("transport", m.clone(), None),
                ApiError::Invalid(m) => ("invalid_argument", m.clone(), None),
            };
            let v =
                serde_json::json!({"error": {"code": code, "message": message, "status": status}});
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
    }
}
