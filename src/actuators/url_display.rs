//! How a URL from a step's params is shown to people: in a step's detail (which the journal,
//! the run summary and the REST API carry), in log lines and in check-config errors. It owns
//! one rule: the userinfo of a URL (`https://user:password@host/`) is never shown. Every place
//! that renders a step's URL goes through `display_url` (or `display_url_text` for text that
//! did not parse as a URL).

/// The URL without its userinfo: `https://user:pw@lb.example/x` shows as
/// `https://lb.example/x`.
pub fn display_url(url: &reqwest::Url) -> String {
    if url.username().is_empty() && url.password().is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    // Both only fail for URLs that cannot have userinfo, which then have none to hide.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// Text that was meant as a URL, for an error message: parsed and shown as `display_url`
/// does; when it does not parse, whatever stands between `://` and the last `@` of the
/// authority is replaced by `***`.
pub fn display_url_text(text: &str) -> String {
    if let Ok(url) = reqwest::Url::parse(text) {
        return display_url(&url);
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_dropped_and_the_rest_kept() {
        let url = reqwest::Url::parse("https://ops:hunter2@lb.example:8443/v1/x?a=1#f").unwrap();
        assert_eq!(display_url(&url), "https://lb.example:8443/v1/x?a=1#f");
        let url = reqwest::Url::parse("http://token@127.0.0.1/x").unwrap();
        assert_eq!(display_url(&url), "http://127.0.0.1/x");
        let plain = reqwest::Url::parse("https://lb.example/x").unwrap();
        assert_eq!(display_url(&plain), "https://lb.example/x");
    }

    #[test]
    fn text_that_is_not_a_url_still_loses_its_userinfo() {
        assert_eq!(
            display_url_text("https://ops:hunter2@lb example/x"),
            "https://***@lb example/x"
        );
        assert_eq!(display_url_text("not a url"), "not a url");
        assert_eq!(
            display_url_text("https://ops:pw@lb.example/x"),
            "https://lb.example/x"
        );
        // An @ in the path is not userinfo.
        assert_eq!(display_url_text("h ttp://host/a@b"), "h ttp://host/a@b");
    }
}
