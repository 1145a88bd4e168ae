//! Timing bounds: small arithmetic expressions over the case's own parameters, in milliseconds.
//!
//! `sum(sleeps_ms)`, `max(sleeps_ms) * 1.5 + 400`, `timeout_ms - 50`, `len(xs) * 100`,
//! `sleeps_ms[2]`. Numbers, parameter names, `+ - * /`, parentheses, and the functions `sum`,
//! `max`, `min`, `len` over list parameters.

use serde_json::Value;
use std::collections::BTreeMap;

/// A parsed expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A number.
    Num(f64),
    /// A parameter (a number).
    Param(String),
    /// `f(param)` over a list parameter.
    Call(String, String),
    /// `param[index]`.
    Index(String, Box<Expr>),
    /// A binary operation.
    Bin(char, Box<Expr>, Box<Expr>),
}

struct P<'a> {
    s: &'a [u8],
    i: usize,
}

impl P<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn ident(&mut self) -> Option<String> {
        self.ws();
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_')
        {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }
    fn expr(&mut self) -> Result<Expr, String> {
        let mut left = self.term()?;
        loop {
            let op = match self.peek() {
                Some(c @ (b'+' | b'-')) => c,
                _ => return Ok(left),
            };
            self.i += 1;
            let right = self.term()?;
            left = Expr::Bin(op as char, Box::new(left), Box::new(right));
        }
    }
    fn term(&mut self) -> Result<Expr, String> {
        let mut left = self.factor()?;
        loop {
            let op = match self.peek() {
                Some(c @ (b'*' | b'/')) => c,
                _ => return Ok(left),
            };
            self.i += 1;
            let right = self.factor()?;
            left = Expr::Bin(op as char, Box::new(left), Box::new(right));
        }
    }
    fn factor(&mut self) -> Result<Expr, String> {
        match self.peek() {
            None => Err("unexpected end of expression".into()),
            Some(b'(') => {
                self.i += 1;
                let e = self.expr()?;
                if !self.eat(b')') {
                    return Err("expected `)`".into());
                }
                Ok(e)
            }
            Some(c) if c.is_ascii_digit() || c == b'.' => {
                let start = self.i;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_digit() || self.s[self.i] == b'.')
                {
                    self.i += 1;
                }
                let t = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                t.parse()
                    .map(Expr::Num)
                    .map_err(|_| format!("bad number {t:?}"))
            }
            Some(_) => {
                let name = self
                    .ident()
                    .ok_or_else(|| format!("unexpected character {:?}", self.s[self.i] as char))?;
                if self.eat(b'(') {
                    if !matches!(name.as_str(), "sum" | "max" | "min" | "len") {
                        return Err(format!("unknown function `{name}` (sum, max, min, len)"));
                    }
                    let arg = self.ident().ok_or("expected a parameter name")?;
                    if !self.eat(b')') {
                        return Err("expected `)`".into());
                    }
                    Ok(Expr::Call(name, arg))
                } else if self.eat(b'[') {
                    let idx = self.expr()?;
                    if !self.eat(b']') {
                        return Err("expected `]`".into());
                    }
                    Ok(Expr::Index(name, Box::new(idx)))
                } else {
                    Ok(Expr::Param(name))
                }
            }
        }
    }
}

/// Parses `text`.
pub fn parse(text: &str) -> Result<Expr, String> {
    let mut p = P {
        s: text.as_bytes(),
        i: 0,
    };
    let e = p.expr()?;
    if p.peek().is_some() {
        return Err(format!("unexpected `{}`", &text[p.i..]));
    }
    Ok(e)
}

fn num(v: &Value, name: &str) -> Result<f64, String> {
    v.as_f64()
        .ok_or_else(|| format!("parameter `{name}` is not a number"))
}

fn list<'a>(params: &'a BTreeMap<String, Value>, name: &str) -> Result<&'a Vec<Value>, String> {
    match params.get(name) {
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(format!("parameter `{name}` is not a list")),
        None => Err(format!("unknown parameter `{name}`")),
    }
}

/// Evaluates `e` with the case's parameters.
pub fn eval(e: &Expr, params: &BTreeMap<String, Value>) -> Result<f64, String> {
    Ok(match e {
        Expr::Num(n) => *n,
        Expr::Param(p) => num(
            params
                .get(p)
                .ok_or_else(|| format!("unknown parameter `{p}`"))?,
            p,
        )?,
        Expr::Call(f, p) => {
            let xs = list(params, p)?;
            let nums: Vec<f64> = xs.iter().map(|v| num(v, p)).collect::<Result<_, _>>()?;
            match f.as_str() {
                "sum" => nums.iter().sum(),
                "max" => nums.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                "min" => nums.iter().cloned().fold(f64::INFINITY, f64::min),
                _ => nums.len() as f64,
            }
        }
        Expr::Index(p, i) => {
            let xs = list(params, p)?;
            let i = eval(i, params)? as usize;
            num(
                xs.get(i)
                    .ok_or_else(|| format!("`{p}[{i}]` is out of range"))?,
                p,
            )?
        }
        Expr::Bin(op, a, b) => {
            let (a, b) = (eval(a, params)?, eval(b, params)?);
            match op {
                '+' => a + b,
                '-' => a - b,
                '*' => a * b,
                _ => a / b,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evaluates_bounds_over_params() {
        let mut p = BTreeMap::new();
        p.insert("s".to_string(), serde_json::json!([300, 100, 250]));
        p.insert("t".to_string(), serde_json::json!(50));
        assert_eq!(eval(&parse("sum(s)").unwrap(), &p).unwrap(), 650.0);
        assert_eq!(eval(&parse("max(s) * 2 + t").unwrap(), &p).unwrap(), 650.0);
        assert_eq!(
            eval(&parse("(len(s) - 1) * s[1]").unwrap(), &p).unwrap(),
            200.0
        );
        assert!(parse("sum(s").is_err());
        assert!(parse("avg(s)").is_err());
        assert!(eval(&parse("nope").unwrap(), &p).is_err());
    }
}
