//! Code hygiene that must not regress: `#![forbid(unsafe_code)]` at both crate roots, and no
//! `.unwrap()` in production code (src/, outside `#[cfg(test)]` modules and test-only files).

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Test-only files: a module declared `#[cfg(test)] mod NAME;` lives in NAME.rs or NAME/.
fn test_only_paths(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        let dir = match file.file_name().and_then(|n| n.to_str()) {
            Some("mod.rs" | "lib.rs" | "main.rs") => file.parent().map(Path::to_path_buf),
            _ => file.with_extension("").into(),
        };
        let Some(dir) = dir else { continue };
        let mut lines = text.lines().map(str::trim);
        while let Some(line) = lines.next() {
            if line != "#[cfg(test)]" {
                continue;
            }
            let Some(next) = lines.next() else { break };
            if let Some(name) = next
                .strip_prefix("mod ")
                .or_else(|| next.strip_prefix("pub mod "))
                .and_then(|rest| rest.strip_suffix(';'))
            {
                out.push(dir.join(format!("{name}.rs")));
                out.push(dir.join(name));
            }
        }
    }
    out
}

/// The code of a file with comments, string and char literals blanked out, and inline
/// `#[cfg(test)] mod NAME { ... }` blocks removed. Line structure is kept.
fn production_code(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut code = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        code.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && {
            let mut j = i + 1;
            while chars.get(j) == Some(&'#') {
                j += 1;
            }
            chars.get(j) == Some(&'"')
                && !chars
                    .get(i.wrapping_sub(1))
                    .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        } {
            let mut hashes = 0;
            i += 1;
            while chars[i] == '#' {
                hashes += 1;
                i += 1;
            }
            i += 1;
            code.push_str("\"\"");
            while i < chars.len() {
                if chars[i] == '"' && (0..hashes).all(|h| chars.get(i + 1 + h) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                if chars[i] == '\n' {
                    code.push('\n');
                }
                i += 1;
            }
        } else if c == '"' {
            i += 1;
            code.push_str("\"\"");
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if chars.get(i) == Some(&'\n') {
                    code.push('\n');
                }
                i += 1;
            }
            i += 1;
        } else if c == '\''
            && (chars.get(i + 2) == Some(&'\'')
                || (next == Some('\\') && chars[i + 1..].iter().take(12).any(|x| *x == '\'')))
        {
            // A char literal ('x', '\n', '\u{..}'); lifetimes ('a) have no closing quote nearby.
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                if chars[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            code.push_str("' '");
        } else {
            code.push(c);
            i += 1;
        }
    }
    strip_inline_test_modules(&code)
}

fn strip_inline_test_modules(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        let (before, after) = rest.split_at(at);
        out.push_str(before);
        let attr_end = "#[cfg(test)]".len();
        let tail = &after[attr_end..];
        let trimmed = tail.trim_start();
        let is_inline_mod = (trimmed.starts_with("mod ") || trimmed.starts_with("pub mod "))
            && trimmed
                .find(['{', ';'])
                .is_some_and(|p| trimmed.as_bytes()[p] == b'{');
        if !is_inline_mod {
            out.push_str(&after[..attr_end]);
            rest = tail;
            continue;
        }
        let open = attr_end + (tail.len() - trimmed.len()) + trimmed.find('{').unwrap_or(0);
        let mut depth = 0usize;
        let mut end = after.len();
        for (k, ch) in after[open..].char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        // Keep the line count so that reported line numbers stay right.
        out.push_str(&"\n".repeat(after[..end].matches('\n').count()));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn no_unwrap_outside_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    sources(&root.join("crates/wfe-bench/src"), &mut files);
    assert!(files.len() > 10, "src/ not found from {}", root.display());
    let test_only = test_only_paths(&files);
    let mut offenders = Vec::new();
    let mut scanned = 0;
    for file in &files {
        if test_only.iter().any(|t| file.starts_with(t)) {
            continue;
        }
        scanned += 1;
        let text = std::fs::read_to_string(file).expect("read source");
        for (n, line) in production_code(&text).lines().enumerate() {
            if line.contains(".unwrap()") {
                let shown = file.strip_prefix(root).unwrap_or(file).display();
                offenders.push(format!("{shown}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    println!(
        "hygiene: {scanned} production source files scanned, {} test-only skipped",
        files.len() - scanned
    );
    assert!(
        offenders.is_empty(),
        "`.unwrap()` in production code (use `?`, `expect` with a reason, or handle it):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn crate_roots_forbid_unsafe_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in [
        "src/lib.rs",
        "src/main.rs",
        "crates/wfe-bench/src/lib.rs",
        "crates/wfe-bench/src/main.rs",
    ] {
        let text = std::fs::read_to_string(root.join(file)).expect("read crate root");
        assert!(
            text.lines().any(|l| l.trim() == "#![forbid(unsafe_code)]"),
            "{file} lost #![forbid(unsafe_code)]"
        );
    }
    // No other binary: a new crate root is a new entry in the list above.
    assert!(
        !root.join("src/bin").exists(),
        "src/bin/ is back: list its crate roots here"
    );
}

#[test]
fn the_scanner_sees_what_it_must() {
    let code = production_code(
        "fn a() { x.unwrap(); }\n// y.unwrap()\nlet s = \"z.unwrap()\";\nlet c = '{';\n#[cfg(test)]\nmod tests {\n fn t() { w.unwrap(); }\n}\nfn b() { v.unwrap() }\n",
    );
    let hits: Vec<_> = code
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(".unwrap()"))
        .map(|(n, _)| n + 1)
        .collect();
    assert_eq!(hits, vec![1, 9], "{code}");
}

/// The product links only the product: what the benchmark and the test harness use lives in
/// crates/wfe-bench, and the release binary (and the dependency list the image embeds) does
/// not carry it.
#[test]
fn the_product_links_nothing_only_the_benchmark_uses() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "tree",
            "-e",
            "normal",
            "-p",
            "wfe-admission",
            "--prefix",
            "none",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(names.contains(&"kube"), "the tree was read: {tree}");
    for only_theirs in ["wfe-bench", "anyhow", "tempfile", "criterion"] {
        assert!(
            !names.contains(&only_theirs),
            "the product links {only_theirs}"
        );
    }
}
