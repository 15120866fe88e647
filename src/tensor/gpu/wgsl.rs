//! Variants of one `.wgsl` file: its `//#if`, `//#elif`, `//#else`, `//#endif` lines choose
//! blocks by flags (a condition is flags joined by `&&`, each maybe negated with `!`), so a
//! kernel's variants live in one shader file instead of being spliced together in Rust.

/// `src` with its conditional blocks resolved for `flags` and the directive lines dropped.
/// The sources are ours and fixed, so a malformed block (checked by the tests of every
/// variant) keeps what it can rather than failing at run time.
pub(super) fn specialise(src: &str, flags: &[&str]) -> String {
    let holds = |cond: &str| {
        cond.split("&&").all(|term| {
            let term = term.trim();
            match term.strip_prefix('!') {
                Some(f) => !flags.contains(&f.trim()),
                None => flags.contains(&term),
            }
        })
    };
    // One frame per open `#if`: (whether its enclosing block is live, whether a branch of it
    // has been taken, whether the current branch is live).
    let mut stack: Vec<(bool, bool, bool)> = Vec::new();
    let live = |stack: &[(bool, bool, bool)]| stack.last().is_none_or(|f| f.2);
    let mut out = String::with_capacity(src.len());
    for line in src.lines() {
        let t = line.trim_start();
        if let Some(cond) = t.strip_prefix("//#if ") {
            let outer = live(&stack);
            let take = outer && holds(cond);
            stack.push((outer, take, take));
        } else if let Some(cond) = t.strip_prefix("//#elif ") {
            if let Some(f) = stack.last_mut() {
                let take = f.0 && !f.1 && holds(cond);
                f.1 |= take;
                f.2 = take;
            }
        } else if t.starts_with("//#else") {
            if let Some(f) = stack.last_mut() {
                f.2 = f.0 && !f.1;
                f.1 = true;
            }
        } else if t.starts_with("//#endif") {
            stack.pop();
        } else if live(&stack) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Whether every `//#if` of `src` is closed by an `//#endif`, and no `//#elif`, `//#else` or
/// `//#endif` stands outside one.
#[cfg(test)]
pub(super) fn balanced(src: &str) -> bool {
    let mut depth = 0i32;
    for t in src.lines().map(str::trim_start) {
        if t.starts_with("//#if ") {
            depth += 1;
        } else if t.starts_with("//#endif") {
            depth -= 1;
        } else if (t.starts_with("//#elif ") || t.starts_with("//#else")) && depth == 0 {
            return false;
        }
        if depth < 0 {
            return false;
        }
    }
    depth == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_follow_the_flags() {
        let src = "a\n//#if X\nx\n//#if Y && !Z\nxy\n//#else\nx-not-y\n//#endif\n//#elif Y\ny\n//#else\nnone\n//#endif\nb\n";
        assert!(balanced(src));
        assert_eq!(specialise(src, &["X", "Y"]), "a\nx\nxy\nb\n");
        assert_eq!(specialise(src, &["X", "Y", "Z"]), "a\nx\nx-not-y\nb\n");
        assert_eq!(specialise(src, &["Y"]), "a\ny\nb\n");
        assert_eq!(specialise(src, &[]), "a\nnone\nb\n");
        assert!(!balanced("//#if X\n") && !balanced("//#endif\n") && !balanced("//#else\n"));
    }
}
