//! Request validation on raw bytes, for the fuzz targets (`crate::fuzz_entry`): the first byte
//! picks a request type, the rest is its protobuf encoding, decoded as tonic decodes it and
//! validated by the same functions the services call before anything reaches the ledger.
use prost::Message;

use super::convert::required_id;
use super::customers::{parse_list_request, parse_new_customer};
use super::pricing::parse_rule;
use super::usage::parse_line;
use crate::domain::error::{Error, Violations};
use crate::domain::text;
use crate::proto::v1;

/// The request types, by the input's first byte (modulo their number).
pub const REQUEST_TYPES: [&str; 4] = [
    "IngestUsageRequest",
    "CreateCustomerRequest",
    "CreatePriceRuleRequest",
    "ListCustomersRequest",
];

/// Ok when the request is valid; a bad request is `Error::InvalidArgument` (every violation
/// naming a field); bytes that are no protobuf of the type are `Error::InvalidArgument` on
/// "request", as tonic's decoding refuses them before a service sees them.
pub fn validate(data: &[u8]) -> Result<(), Error> {
    let Some((&selector, encoded)) = data.split_first() else {
        return Err(Error::invalid("request", "empty input"));
    };
    let undecodable = |e: prost::DecodeError| Error::invalid("request", e.to_string());
    match usize::from(selector) % REQUEST_TYPES.len() {
        0 => {
            // IngestUsage checks the stream's first message like this, then every line.
            let message = v1::IngestUsageRequest::decode(encoded).map_err(undecodable)?;
            let mut v = Violations::new();
            v.check(text::request_id(&message.request_id, true));
            v.check_error(required_id(
                "partner_account_id",
                &message.partner_account_id,
            ))?;
            for (i, line) in message.lines.iter().enumerate() {
                parse_line(&format!("lines[{i}]"), line, &mut v);
            }
            v.into_result()
        }
        1 => {
            let message = v1::CreateCustomerRequest::decode(encoded).map_err(undecodable)?;
            parse_new_customer(&message).map(|_| ())
        }
        2 => {
            let message = v1::CreatePriceRuleRequest::decode(encoded).map_err(undecodable)?;
            text::request_id(&message.request_id, true)
                .map_err(|v| Error::InvalidArgument(vec![v]))?;
            let rule = message
                .price_rule
                .ok_or_else(|| Error::invalid("price_rule", "is required"))?;
            parse_rule(&rule).map(|_| ())
        }
        _ => {
            let message = v1::ListCustomersRequest::decode(encoded).map_err(undecodable)?;
            parse_list_request(&message).map(|_| ())
        }
    }
}
