//! The subject common name (CN) of a client certificate, for listeners with
//! `use_subject_as_username`.
//!
//! Only certificates that rustls has already verified against the listener's
//! CA get here, but the bytes are still treated as hostile: this is a small
//! DER walker that reads exactly the path Certificate -> TBSCertificate ->
//! subject -> the CN attribute, bounds every length by what is left, never
//! indexes, and allocates only the returned name. It is not a general X.509
//! parser, and needs to be none: rustls (webpki) has checked the structure,
//! the signature and the validity period.

/// Why a certificate gives no user name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SubjectError {
    #[error("the certificate is not well-formed DER")]
    Malformed,
    #[error("the certificate's subject has no common name (CN)")]
    NoCommonName,
    #[error("the certificate's subject has more than one common name (CN)")]
    SeveralCommonNames,
    #[error("the certificate's common name is not a string type this server reads")]
    UnsupportedString,
    #[error("the certificate's common name is empty or holds control characters")]
    InvalidName,
}

/// DER tags used on the way to the subject.
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OBJECT_IDENTIFIER: u8 = 0x06;
/// `[0] EXPLICIT Version` of TBSCertificate.
const VERSION: u8 = 0xa0;
const UTF8_STRING: u8 = 0x0c;
const PRINTABLE_STRING: u8 = 0x13;
const IA5_STRING: u8 = 0x16;
const BMP_STRING: u8 = 0x1e;
/// id-at-commonName, 2.5.4.3.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// The subject CN of a DER certificate. Exactly one CN is accepted: with
/// several, which one names the user would be a guess.
pub(crate) fn common_name(certificate: &[u8]) -> Result<String, SubjectError> {
    let mut outer = Der(certificate);
    let mut certificate = Der(outer.expect(SEQUENCE)?);
    let mut tbs = Der(certificate.expect(SEQUENCE)?);
    if tbs.peek_tag() == Some(VERSION) {
        tbs.any()?;
    }
    tbs.expect(INTEGER)?; // serialNumber
    tbs.expect(SEQUENCE)?; // signature
    tbs.expect(SEQUENCE)?; // issuer
    tbs.expect(SEQUENCE)?; // validity
    let mut subject = Der(tbs.expect(SEQUENCE)?);
    let mut found = None;
    while !subject.is_empty() {
        let mut relative_name = Der(subject.expect(SET)?);
        while !relative_name.is_empty() {
            let mut attribute = Der(relative_name.expect(SEQUENCE)?);
            let oid = attribute.expect(OBJECT_IDENTIFIER)?;
            let (tag, value) = attribute.any()?;
            if oid != COMMON_NAME {
                continue;
            }
            if found.is_some() {
                return Err(SubjectError::SeveralCommonNames);
            }
            found = Some(decode_string(tag, value)?);
        }
    }
    let name = found.ok_or(SubjectError::NoCommonName)?;
    // [MQTT-1.5.4-2]: no U+0000 in an MQTT string; other control characters
    // have no place in a user name either, and would garble logs.
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(SubjectError::InvalidName);
    }
    Ok(name)
}

fn decode_string(tag: u8, value: &[u8]) -> Result<String, SubjectError> {
    match tag {
        UTF8_STRING | PRINTABLE_STRING | IA5_STRING => std::str::from_utf8(value)
            .map(str::to_owned)
            .map_err(|_| SubjectError::InvalidName),
        BMP_STRING => {
            let (units, rest) = value.as_chunks::<2>();
            if !rest.is_empty() {
                return Err(SubjectError::Malformed);
            }
            char::decode_utf16(units.iter().map(|pair| u16::from_be_bytes(*pair)))
                .collect::<Result<String, _>>()
                .map_err(|_| SubjectError::InvalidName)
        }
        _ => Err(SubjectError::UnsupportedString),
    }
}

/// The unread rest of a DER value's contents.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.0.first().copied()
    }

    /// The next element's tag and contents.
    fn any(&mut self) -> Result<(u8, &'a [u8]), SubjectError> {
        let (&tag, rest) = self.0.split_first().ok_or(SubjectError::Malformed)?;
        // Multi-byte tags (low bits all set) do not occur on this path.
        if tag & 0x1f == 0x1f {
            return Err(SubjectError::Malformed);
        }
        let (&first, mut rest) = rest.split_first().ok_or(SubjectError::Malformed)?;
        let length = if first < 0x80 {
            usize::from(first)
        } else {
            // Long form: 1 to 4 length bytes (0x80, the indefinite form, is
            // not DER).
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 {
                return Err(SubjectError::Malformed);
            }
            let (bytes, after) = rest
                .split_at_checked(count)
                .ok_or(SubjectError::Malformed)?;
            rest = after;
            bytes
                .iter()
                .fold(0usize, |length, byte| (length << 8) | usize::from(*byte))
        };
        let (contents, after) = rest
            .split_at_checked(length)
            .ok_or(SubjectError::Malformed)?;
        self.0 = after;
        Ok((tag, contents))
    }

    /// The next element's contents, which must have `tag`.
    fn expect(&mut self, tag: u8) -> Result<&'a [u8], SubjectError> {
        match self.any()? {
            (found, contents) if found == tag => Ok(contents),
            _ => Err(SubjectError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DER for one element.
    fn element(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let length = contents.len();
        if length < 0x80 {
            out.push(length as u8);
        } else if length < 0x100 {
            out.extend([0x81, length as u8]);
        } else {
            out.extend([0x82, (length >> 8) as u8, length as u8]);
        }
        out.extend_from_slice(contents);
        out
    }

    fn attribute(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        let mut contents = element(OBJECT_IDENTIFIER, oid);
        contents.extend(element(tag, value));
        element(SET, &element(SEQUENCE, &contents))
    }

    /// A certificate skeleton with the given subject RDNs; the parts this
    /// reader skips hold placeholders.
    fn certificate(subject: &[Vec<u8>]) -> Vec<u8> {
        let mut tbs = element(VERSION, &element(INTEGER, &[2]));
        tbs.extend(element(INTEGER, &[1, 2, 3]));
        tbs.extend(element(SEQUENCE, &[]));
        tbs.extend(element(
            SEQUENCE,
            &attribute(COMMON_NAME, UTF8_STRING, b"issuer"),
        ));
        tbs.extend(element(SEQUENCE, &[]));
        tbs.extend(element(SEQUENCE, &subject.concat()));
        tbs.extend(element(SEQUENCE, &[0; 200])); // subjectPublicKeyInfo, long form length
        let mut body = element(SEQUENCE, &tbs);
        body.extend(element(SEQUENCE, &[]));
        body.extend(element(0x03, &[0]));
        element(SEQUENCE, &body)
    }

    const ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];

    #[test]
    fn reads_the_common_name_among_other_attributes() {
        let der = certificate(&[
            attribute(ORGANIZATION, UTF8_STRING, b"Acme"),
            attribute(COMMON_NAME, UTF8_STRING, "sensor-ü1".as_bytes()),
        ]);
        assert_eq!(common_name(&der), Ok("sensor-ü1".to_owned()));
        let der = certificate(&[attribute(COMMON_NAME, PRINTABLE_STRING, b"device 7")]);
        assert_eq!(common_name(&der), Ok("device 7".to_owned()));
        let bmp: Vec<u8> = "bé".encode_utf16().flat_map(u16::to_be_bytes).collect();
        let der = certificate(&[attribute(COMMON_NAME, BMP_STRING, &bmp)]);
        assert_eq!(common_name(&der), Ok("bé".to_owned()));
    }

    #[test]
    fn refuses_missing_repeated_and_bad_names() {
        let der = certificate(&[attribute(ORGANIZATION, UTF8_STRING, b"Acme")]);
        assert_eq!(common_name(&der), Err(SubjectError::NoCommonName));
        let der = certificate(&[
            attribute(COMMON_NAME, UTF8_STRING, b"alice"),
            attribute(COMMON_NAME, UTF8_STRING, b"admin"),
        ]);
        assert_eq!(common_name(&der), Err(SubjectError::SeveralCommonNames));
        for bad in [&b""[..], b"a\0b", b"a\nb", &[0xff, 0xfe]] {
            let der = certificate(&[attribute(COMMON_NAME, UTF8_STRING, bad)]);
            assert_eq!(common_name(&der), Err(SubjectError::InvalidName), "{bad:?}");
        }
        let der = certificate(&[attribute(COMMON_NAME, 0x14, b"teletex")]);
        assert_eq!(common_name(&der), Err(SubjectError::UnsupportedString));
        let der = certificate(&[attribute(COMMON_NAME, BMP_STRING, &[0, 0x41, 0])]);
        assert_eq!(common_name(&der), Err(SubjectError::Malformed));
    }

    #[test]
    fn never_panics_on_truncated_or_garbled_input() {
        let der = certificate(&[attribute(COMMON_NAME, UTF8_STRING, b"alice")]);
        assert!(common_name(&der).is_ok());
        for length in 0..der.len() {
            assert!(
                common_name(&der[..length]).is_err(),
                "prefix of {length} bytes"
            );
        }
        for position in 0..der.len() {
            for value in [0x00, 0x1f, 0x80, 0x84, 0x85, 0xff] {
                let mut garbled = der.clone();
                garbled[position] = value;
                let _ = common_name(&garbled);
            }
        }
        // Lengths that claim more than there is.
        assert_eq!(
            common_name(&[SEQUENCE, 0x84, 0xff, 0xff, 0xff, 0xff]),
            Err(SubjectError::Malformed)
        );
        assert_eq!(common_name(&[SEQUENCE, 0x80]), Err(SubjectError::Malformed));
    }
}
