#![no_main]
//! Any bytes as a handshake tail: client flags, an option header and its data. Parsing gives
//! a typed option or a typed error, never a panic; a refused option maps to an error reply.

use amflink::nbd::protocol::{
    ClientOption, OPTION_HEADER_BYTES, OptionHeader, REP_ERR_INVALID, REP_ERR_UNSUP,
    parse_client_flags, parse_option,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = parse_client_flags(bytes);
    let Ok(header) = OptionHeader::parse(bytes) else {
        return;
    };
    let data = &bytes[OPTION_HEADER_BYTES..];
    match parse_option(header.option, data) {
        Ok(ClientOption::Info { name, requests, .. }) => {
            assert!(name.len() + requests.len() * 2 + 6 == data.len());
        }
        Ok(ClientOption::ExportName { name }) => assert_eq!(name, data),
        Ok(_) => {}
        Err(error) => {
            let reply_type = error.reply_type();
            assert!(reply_type == REP_ERR_INVALID || reply_type == REP_ERR_UNSUP);
        }
    }
});
