//! A small JSON reader for etcd's gateway answers: parses a whole document into a [`Value`] tree,
//! with a nesting limit, and never panics on bad input (it returns `None`).
//!
//! Hand-written rather than `serde_json` because the answers are small, the fields read are few
//! (`kvs[].value`, `header.revision`, `ID`, `TTL`, `result.events[]`, …), and the `etcd` feature
//! should add no crate to the build. Requests are built with `format!`: every string in them is
//! base64 or a decimal number, which never needs escaping.
//!
//! etcd encodes 64-bit integers as JSON strings (`"revision":"42"`) and omits fields that hold
//! their default (a PUT event has no `type`, an expired lease's `TTL` is absent), so the getters
//! take both forms and the callers treat a missing field as its default.

/// Deepest nesting accepted; deeper documents are rejected (no unbounded recursion).
const MAX_DEPTH: usize = 64;

/// A parsed JSON value. Numbers keep their text.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `null`
    Null,
    /// `true` or `false`
    Bool(bool),
    /// A number, as written.
    Num(String),
    /// A string, unescaped.
    Str(String),
    /// An array.
    Arr(Vec<Value>),
    /// An object, fields in document order.
    Obj(Vec<(String, Value)>),
}

impl Value {
    /// Parses one JSON document (surrounding whitespace allowed). `None` if it is not valid JSON.
    pub fn parse(text: &str) -> Option<Value> {
        let mut p = Parser {
            s: text.as_bytes(),
            at: 0,
        };
        let v = p.value(0)?;
        p.ws();
        (p.at == p.s.len()).then_some(v)
    }

    /// The field `key` of an object (`None` for other values or a missing field).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A path of fields: `v.at(&["result", "header", "revision"])`.
    pub fn at(&self, path: &[&str]) -> Option<&Value> {
        path.iter().try_fold(self, |v, k| v.get(k))
    }

    /// The elements of an array (empty for anything else, as etcd omits empty arrays).
    pub fn items(&self) -> &[Value] {
        match self {
            Value::Arr(items) => items,
            _ => &[],
        }
    }

    /// A string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An integer, written as a number or (as etcd writes int64) as a string of digits.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Num(s) | Value::Str(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// A boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at.checked_add(word.len())?;
        (self.s.get(self.at..end)? == word).then(|| self.at = end)
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        match self.peek()? {
            b'n' => self.eat(b"null").map(|_| Value::Null),
            b't' => self.eat(b"true").map(|_| Value::Bool(true)),
            b'f' => self.eat(b"false").map(|_| Value::Bool(false)),
            b'"' => self.string().map(Value::Str),
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.at += 1;
                    return Some(Value::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.peek()? {
                        b',' => self.at += 1,
                        b']' => {
                            self.at += 1;
                            return Some(Value::Arr(items));
                        }
                        _ => return None,
                    }
                }
            }
            b'{' => {
                self.at += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.at += 1;
                    return Some(Value::Obj(fields));
                }
                loop {
                    self.ws();
                    if self.peek()? != b'"' {
                        return None;
                    }
                    let key = self.string()?;
                    self.ws();
                    self.eat(b":")?;
                    fields.push((key, self.value(depth + 1)?));
                    self.ws();
                    match self.peek()? {
                        b',' => self.at += 1,
                        b'}' => {
                            self.at += 1;
                            return Some(Value::Obj(fields));
                        }
                        _ => return None,
                    }
                }
            }
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let digits = |p: &mut Self| {
            let from = p.at;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.at += 1;
            }
            p.at > from
        };
        if !digits(self) {
            return None;
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if !digits(self) {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if !digits(self) {
                return None;
            }
        }
        let text = std::str::from_utf8(self.s.get(start..self.at)?).ok()?;
        Some(Value::Num(text.to_owned()))
    }

    /// A string starting at the opening quote.
    fn string(&mut self) -> Option<String> {
        self.eat(b"\"")?;
        let mut out = Vec::new();
        loop {
            let c = self.peek()?;
            self.at += 1;
            match c {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let e = self.peek()?;
                    self.at += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return None,
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                0..=0x1f => return None, // control characters must be escaped
                _ => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let end = self.at.checked_add(4)?;
        let text = std::str::from_utf8(self.s.get(self.at..end)?).ok()?;
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.at = end;
        u32::from_str_radix(text, 16).ok()
    }

    /// After `\u`: one code point, joining a surrogate pair.
    fn unicode_escape(&mut self) -> Option<char> {
        let hi = self.hex4()?;
        if (0xD800..0xDC00).contains(&hi) {
            self.eat(b"\\u")?;
            let lo = self.hex4()?;
            if !(0xDC00..0xE000).contains(&lo) {
                return None;
            }
            return char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00));
        }
        char::from_u32(hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_etcd_range_answer() {
        let text = r#"{"header":{"cluster_id":"151","revision":"2","raft_term":"2"},
            "kvs":[{"key":"YTE=","create_revision":"2","value":"eA==","lease":"41"}],"count":"1"}"#;
        let v = Value::parse(text).unwrap();
        assert_eq!(
            v.at(&["header", "revision"]).and_then(Value::as_i64),
            Some(2)
        );
        let kvs = v.get("kvs").unwrap().items();
        assert_eq!(kvs.len(), 1);
        assert_eq!(kvs[0].get("value").and_then(Value::as_str), Some("eA=="));
        assert!(v.get("missing").is_none());
        assert!(v.get("count").unwrap().items().is_empty());
    }

    #[test]
    fn scalars_escapes_and_whitespace() {
        let v = Value::parse(
            r#" [null, true, false, -1.5e3, 0, "a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"] "#,
        )
        .unwrap();
        let items = v.items();
        assert_eq!(items[0], Value::Null);
        assert_eq!(items[1].as_bool(), Some(true));
        assert_eq!(items[2].as_bool(), Some(false));
        assert_eq!(items[3], Value::Num("-1.5e3".into()));
        assert_eq!(items[4].as_i64(), Some(0));
        assert_eq!(items[5].as_str(), Some("a\"\\/\u{8}\u{c}\n\r\té😀"));
        assert_eq!(Value::parse("{}"), Some(Value::Obj(vec![])));
        assert_eq!(Value::parse("\"ü\""), Some(Value::Str("ü".into())));
    }

    #[test]
    fn bad_documents_are_none() {
        let bad = [
            "",
            "{",
            "}",
            "[1,]",
            "{\"a\"}",
            "{\"a\":}",
            "{a:1}",
            "tru",
            "nul",
            "01x",
            "-",
            "1.",
            "1e",
            "\"abc",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\ud800\"",
            "\"\\ud800\\u0041\"",
            "[1 2]",
            "{\"a\":1,}",
            "{} {}",
            "\"\n\"",
            "[\"\\u",
        ];
        for b in bad {
            assert_eq!(Value::parse(b), None, "{b:?}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        assert_eq!(Value::parse(&deep), None);
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(Value::parse(&ok).is_some());
    }

    #[test]
    fn never_panics_on_any_prefix_or_byte_flip() {
        let doc = r#"{"result":{"header":{"revision":"3"},"events":[{"type":"DELETE","kv":{"key":"YTE=","mod_revision":"3"}}]}}"#;
        for end in 0..=doc.len() {
            if let Some(prefix) = doc.get(..end) {
                let _ = Value::parse(prefix);
            }
        }
        let bytes = doc.as_bytes();
        for i in 0..bytes.len() {
            for b in [b'"', b'\\', b'{', b']', b'0', b'\0', b'-'] {
                let mut v = bytes.to_vec();
                v[i] = b;
                if let Ok(s) = std::str::from_utf8(&v) {
                    let _ = Value::parse(s);
                }
            }
        }
    }
}
