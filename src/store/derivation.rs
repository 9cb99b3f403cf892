//! Nix derivations (`.drv` files), read from their ATerm text.
//!
//! The format, as Nix writes it:
//!
//! ```text
//! Derive([("out","/nix/store/…-name","r:sha256","<hex>"),…],   outputs: name, path, hash algo, hash
//!        [("/nix/store/…-dep.drv",["out",…]),…],                input derivations and their outputs
//!        ["/nix/store/…-source",…],                             input sources
//!        "x86_64-linux","/bin/sh",["-c","…"],                   system, builder, arguments
//!        [("name","value"),…])                                  environment
//! ```
//!
//! Quirks:
//! - a fixed-output derivation has one output whose hash algorithm is set: `sha256` for a flat
//!   hash, `r:sha256` for a NAR hash (`text:sha256` is a text-hashed, not fetched, output); its
//!   hash is hex, whatever encoding the Nix expression used; floating content-addressed outputs
//!   set the algorithm but leave the hash empty;
//! - strings escape `"` and `\` with a backslash, and newline, carriage return and tab as `\n`,
//!   `\r` and `\t`; any other byte stands for itself, so a string may span lines;
//! - lists and environment entries come sorted, but nothing here relies on it.

use std::collections::BTreeMap;

/// A parsed derivation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Derivation {
    pub outputs: BTreeMap<String, Output>,
    /// Input derivations (`.drv` paths) and which of their outputs are used.
    pub input_derivations: BTreeMap<String, Vec<String>>,
    pub input_sources: Vec<String>,
    pub system: String,
    pub builder: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
}

/// One output of a derivation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The store path (empty for floating content-addressed outputs).
    pub path: String,
    /// Empty unless the output is content-addressed: `sha256`, `r:sha256`, `text:sha256`, ….
    pub hash_algo: String,
    /// Hex, for fixed outputs; empty otherwise.
    pub hash: String,
}

/// Why a derivation could not be read.
#[derive(Debug, thiserror::Error)]
#[error("malformed derivation at byte {offset}: {reason}")]
pub struct DerivationError {
    pub offset: usize,
    pub reason: String,
}

impl Derivation {
    /// Parses the text of a `.drv` file.
    pub(crate) fn parse(text: &[u8]) -> Result<Derivation, DerivationError> {
        let mut p = Parser { text, pos: 0 };
        p.expect(b"Derive(")?;
        let outputs = p.list(|p| {
            p.expect(b"(")?;
            let name = p.string()?;
            p.expect(b",")?;
            let path = p.string()?;
            p.expect(b",")?;
            let hash_algo = p.string()?;
            p.expect(b",")?;
            let hash = p.string()?;
            p.expect(b")")?;
            Ok((name, Output { path, hash_algo, hash }))
        })?;
        p.expect(b",")?;
        let input_derivations = p.list(|p| {
            p.expect(b"(")?;
            let path = p.string()?;
            p.expect(b",")?;
            let outputs = p.list(Parser::string)?;
            p.expect(b")")?;
            Ok((path, outputs))
        })?;
        p.expect(b",")?;
        let input_sources = p.list(Parser::string)?;
        p.expect(b",")?;
        let system = p.string()?;
        p.expect(b",")?;
        let builder = p.string()?;
        p.expect(b",")?;
        let args = p.list(Parser::string)?;
        p.expect(b",")?;
        let env = p.list(|p| {
            p.expect(b"(")?;
            let name = p.string()?;
            p.expect(b",")?;
            let value = p.string()?;
            p.expect(b")")?;
            Ok((name, value))
        })?;
        p.expect(b")")?;
        if p.pos != text.len() {
            return Err(p.error("text follows the derivation"));
        }
        Ok(Derivation {
            outputs: outputs.into_iter().collect(),
            input_derivations: input_derivations.into_iter().collect(),
            input_sources,
            system,
            builder,
            args,
            env: env.into_iter().collect(),
        })
    }

    /// The fixed output, if this is a fixed-output derivation (a fetcher).
    pub fn fixed_output(&self) -> Option<&Output> {
        match self.outputs.iter().collect::<Vec<_>>()[..] {
            [(name, output)]
                if name == "out"
                    && !output.hash.is_empty()
                    && !output.hash_algo.is_empty()
                    && !output.hash_algo.starts_with("text:") =>
            {
                Some(output)
            }
            _ => None,
        }
    }
}

struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, reason: impl Into<String>) -> DerivationError {
        DerivationError { offset: self.pos, reason: reason.into() }
    }

    fn expect(&mut self, token: &[u8]) -> Result<(), DerivationError> {
        if self.text[self.pos..].starts_with(token) {
            self.pos += token.len();
            Ok(())
        } else {
            Err(self.error(format!("expected `{}`", String::from_utf8_lossy(token))))
        }
    }

    fn string(&mut self) -> Result<String, DerivationError> {
        self.expect(b"\"")?;
        let mut bytes = Vec::new();
        loop {
            let Some(&byte) = self.text.get(self.pos) else { return Err(self.error("a string is not closed")) };
            self.pos += 1;
            match byte {
                b'"' => break,
                b'\\' => {
                    let Some(&escaped) = self.text.get(self.pos) else {
                        return Err(self.error("a string ends in a backslash"));
                    };
                    self.pos += 1;
                    bytes.push(match escaped {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        other => other,
                    });
                }
                other => bytes.push(other),
            }
        }
        String::from_utf8(bytes).map_err(|_| self.error("a string is not UTF-8"))
    }

    fn list<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, DerivationError>,
    ) -> Result<Vec<T>, DerivationError> {
        self.expect(b"[")?;
        let mut items = Vec::new();
        if self.expect(b"]").is_ok() {
            return Ok(items);
        }
        loop {
            items.push(item(self)?);
            if self.expect(b"]").is_ok() {
                return Ok(items);
            }
            self.expect(b",")?;
        }
    }
}
