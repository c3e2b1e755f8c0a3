//! JSON subset comparison (FRR topotest `json_cmp` semantics), for asserting on
//! `vtysh … json`, `ip -j …` and our own status API.
//!
//! `json_subset(expected, actual)` holds when:
//! * objects: every key of `expected` is in `actual` and its value matches; extra keys in
//!   `actual` are ignored. An expected `null` means "this key is absent (or null)";
//! * the string `"*"` matches any present value;
//! * arrays: every expected element matches a *distinct* element of `actual`, in any order
//!   (greedy, first match wins, like `json_cmp` without `__ordered__`); extra actual elements
//!   are ignored;
//! * numbers compare numerically (`1` matches `1.0`); other scalars compare equal.
//!
//! Errors name the JSON path of the first mismatch, e.g.
//! `$.ipv4Unicast.peers["198.18.0.2"].state: expected "Established", got "Active"`.

use serde_json::Value;

/// Checks that `expected` is a subset of `actual` (see the module docs for the rules).
pub fn json_subset(expected: &Value, actual: &Value) -> Result<(), String> {
    subset_at("$", expected, actual)
}

/// Panics with the mismatch and the full `actual` document unless `expected ⊆ actual`.
#[track_caller]
pub fn assert_json_subset(expected: &Value, actual: &Value) {
    if let Err(e) = json_subset(expected, actual) {
        panic!(
            "JSON subset mismatch: {e}\nactual document:\n{}",
            serde_json::to_string_pretty(actual).unwrap_or_default()
        );
    }
}

fn subset_at(path: &str, expected: &Value, actual: &Value) -> Result<(), String> {
    match (expected, actual) {
        (Value::String(s), _) if s == "*" => Ok(()),
        (Value::Object(exp), Value::Object(act)) => {
            for (key, exp_val) in exp {
                let child = child_path(path, key);
                match act.get(key) {
                    None | Some(Value::Null) if exp_val.is_null() => {}
                    None => {
                        let mut keys: Vec<&str> = act.keys().map(String::as_str).collect();
                        keys.truncate(20);
                        return Err(format!(
                            "{child}: key missing (present keys: {})",
                            keys.join(", ")
                        ));
                    }
                    Some(act_val) if exp_val.is_null() => {
                        return Err(format!(
                            "{child}: expected the key to be absent, got {}",
                            short(act_val)
                        ));
                    }
                    Some(act_val) => subset_at(&child, exp_val, act_val)?,
                }
            }
            Ok(())
        }
        (Value::Array(exp), Value::Array(act)) => {
            let mut used = vec![false; act.len()];
            for (i, exp_elem) in exp.iter().enumerate() {
                // Remember the candidate whose mismatch got deepest, as the most useful hint.
                let mut closest: Option<String> = None;
                let found = act.iter().enumerate().find(|(j, act_elem)| {
                    if used[*j] {
                        return false;
                    }
                    match subset_at(&format!("{path}[{j}]"), exp_elem, act_elem) {
                        Ok(()) => true,
                        Err(e) => {
                            if closest.as_ref().is_none_or(|c| depth(&e) > depth(c)) {
                                closest = Some(e);
                            }
                            false
                        }
                    }
                });
                match found {
                    Some((j, _)) => used[j] = true,
                    None => {
                        return Err(format!(
                            "{path}: no unused element of the actual array ({} elements) matches \
                             expected element #{i} {}{}",
                            act.len(),
                            short(exp_elem),
                            closest
                                .map(|c| format!("; closest mismatch: {c}"))
                                .unwrap_or_default()
                        ));
                    }
                }
            }
            Ok(())
        }
        (Value::Number(e), Value::Number(a)) => {
            let same = match (e.as_i64(), a.as_i64(), e.as_u64(), a.as_u64()) {
                (Some(x), Some(y), _, _) => x == y,
                (_, _, Some(x), Some(y)) => x == y,
                _ => e.as_f64() == a.as_f64(),
            };
            if same {
                Ok(())
            } else {
                Err(mismatch(path, expected, actual))
            }
        }
        _ if expected == actual => Ok(()),
        _ => Err(mismatch(path, expected, actual)),
    }
}

fn mismatch(path: &str, expected: &Value, actual: &Value) -> String {
    format!(
        "{path}: expected {}, got {}",
        short(expected),
        short(actual)
    )
}

/// `path.key`, or `path["key"]` when the key is not a plain identifier (addresses, prefixes).
fn child_path(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}[{key:?}]")
    }
}

/// Rough nesting depth of the path an error message starts with.
fn depth(err: &str) -> usize {
    let path = err.split(": ").next().unwrap_or("");
    path.matches(['.', '[']).count()
}

/// Compact rendering of a value for messages, cut at 200 characters.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 200 {
        format!("{}…", s.chars().take(200).collect::<String>())
    } else {
        s
    }
}
