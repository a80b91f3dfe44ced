//! Reading CSV records (RFC 4180) with the line each starts on, so an error can name the row as
//! a spreadsheet shows it. Vendors' files come with or without a UTF-8 byte-order mark, with CRLF
//! or LF line ends, and with quoted fields that may hold commas, doubled quotes and line breaks.
//! The gateway only reads small files this way (price sheets), so a whole file is in memory.

/// One record: its fields and the (1-based) line of the file it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub line: usize,
    pub fields: Vec<String>,
}

/// The records of `text`, or why it is not CSV (with the line). Blank lines are skipped.
pub fn records(text: &str) -> Result<Vec<Record>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        let start = line;
        let mut fields = Vec::new();
        let mut field = String::new();
        let mut quoted = false;
        loop {
            match chars.next() {
                None => {
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some('"') if field.is_empty() && !quoted => {
                    quoted = true;
                    loop {
                        match chars.next() {
                            None => {
                                return Err(format!(
                                    "line {start}: a quoted field is never closed"
                                ));
                            }
                            Some('"') if chars.peek() == Some(&'"') => {
                                chars.next();
                                field.push('"');
                            }
                            Some('"') => break,
                            Some(c) => {
                                if c == '\n' {
                                    line += 1;
                                }
                                field.push(c);
                            }
                        }
                    }
                    match chars.peek() {
                        None | Some(',') | Some('\r') | Some('\n') => {}
                        Some(_) => {
                            return Err(format!(
                                "line {line}: text follows a closing quote (a quote inside a field must be doubled)"
                            ));
                        }
                    }
                }
                Some(',') => {
                    fields.push(std::mem::take(&mut field));
                    quoted = false;
                }
                Some('\r') if chars.peek() == Some(&'\n') => {}
                Some('\n') => {
                    line += 1;
                    fields.push(std::mem::take(&mut field));
                    break;
                }
                Some('"') => {
                    return Err(format!(
                        "line {line}: a quote inside an unquoted field (quote the field and double the quote)"
                    ));
                }
                Some(c) => field.push(c),
            }
        }
        let blank = fields.len() == 1 && fields[0].is_empty() && !quoted;
        if !blank {
            out.push(Record {
                line: start,
                fields,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Vec<(usize, Vec<String>)> {
        records(text)
            .unwrap()
            .into_iter()
            .map(|r| (r.line, r.fields))
            .collect()
    }

    #[test]
    fn quoted_fields_line_ends_and_a_byte_order_mark() {
        let text = "\u{feff}a,b,c\r\n1,\"x, y\",\"say \"\"hi\"\"\"\r\n\r\n2,\"two\nlines\",\n3,,z";
        let got = fields(text);
        assert_eq!(got[0], (1, vec!["a".into(), "b".into(), "c".into()]));
        assert_eq!(
            got[1],
            (2, vec!["1".into(), "x, y".into(), "say \"hi\"".into()])
        );
        assert_eq!(
            got[2],
            (4, vec!["2".into(), "two\nlines".into(), String::new()])
        );
        assert_eq!(got[3], (6, vec!["3".into(), String::new(), "z".into()]));
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn malformed_quoting_names_the_line() {
        assert!(records("a\n\"open").unwrap_err().starts_with("line 2"));
        assert!(records("a\nb\"c").unwrap_err().starts_with("line 2"));
        assert!(records("\"a\"b").unwrap_err().contains("closing quote"));
    }
}
