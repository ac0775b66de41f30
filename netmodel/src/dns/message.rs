//! What the embedded server does with one message (pure): answer it from the zone, forward
//! it, or drop it. Parsing and building go through `hickory-proto`.

use std::net::IpAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::{TTL, Zone};

/// The decision for one message.
#[derive(Debug)]
pub(crate) enum Reply {
    /// Send these bytes back.
    Answer(Vec<u8>),
    /// Not the zone's name: forward the query (parsed) upstream.
    Forward(Box<Message>),
    /// Not a query (or not parsable): say nothing.
    Drop,
}

/// Answers `query` from `zone`, or says to forward it.
pub(crate) fn handle(query: &[u8], zone: &dyn Zone) -> Reply {
    let Ok(request) = Message::from_vec(query) else { return Reply::Drop };
    if request.metadata.message_type != MessageType::Query {
        return Reply::Drop;
    }
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    if request.edns.is_some() {
        response.set_edns(Edns::new());
    }
    if request.metadata.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
        return encode(&response);
    }
    let [query] = request.queries.as_slice() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return encode(&response);
    };
    let qtype = query.query_type();
    if !zone.allows_name(&query.name().to_ascii()) {
        response.add_query(query.clone());
        response.metadata.response_code = ResponseCode::Refused;
        return encode(&response);
    }
    if qtype == RecordType::PTR {
        let ip = query.name().parse_arpa_name().ok().filter(|net| net.prefix_len() == net.max_prefix_len());
        let Some(names) = ip.and_then(|net| zone.reverse(net.addr())) else {
            return Reply::Forward(Box::new(request));
        };
        response.add_query(query.clone());
        response.metadata.authoritative = true;
        for name in names.iter().filter_map(|n| Name::from_ascii(format!("{n}.")).ok()) {
            response.add_answer(Record::from_rdata(query.name().clone(), TTL, RData::PTR(PTR(name))));
        }
        return encode(&response);
    }
    let name = query.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
    let Some(addresses) = zone.lookup(&name) else { return Reply::Forward(Box::new(request)) };
    response.add_query(query.clone());
    response.metadata.authoritative = true;
    for address in addresses {
        let rdata = match (address, qtype) {
            (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => RData::A(A(v4)),
            (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => RData::AAAA(AAAA(v6)),
            _ => continue,
        };
        response.add_answer(Record::from_rdata(query.name().clone(), TTL, rdata));
    }
    encode(&response)
}

/// The addresses in `message`'s answers (`A`, `AAAA`), each with its TTL.
pub(crate) fn addresses_of(message: &Message) -> Vec<(IpAddr, Duration)> {
    message
        .answers
        .iter()
        .filter_map(|r| {
            let ip = match &r.data {
                RData::A(a) => IpAddr::V4(a.0),
                RData::AAAA(a) => IpAddr::V6(a.0),
                _ => return None,
            };
            Some((ip, Duration::from_secs(u64::from(r.ttl))))
        })
        .collect()
}

/// `message` with its id replaced (a forwarded query, or an upstream's answer going back).
pub(crate) fn with_id(mut message: Message, id: u16) -> Option<Vec<u8>> {
    message.metadata.id = id;
    message.to_vec().ok()
}

/// An upstream's answer: parsed, with its id.
pub(crate) fn parse_answer(bytes: &[u8]) -> Option<Message> {
    Message::from_vec(bytes).ok().filter(|m| m.metadata.message_type == MessageType::Response)
}

/// `SERVFAIL` for a query that no upstream answered.
pub(crate) fn servfail(request: &Message, id: u16) -> Option<Vec<u8>> {
    let mut response = Message::error_msg(id, request.metadata.op_code, ResponseCode::ServFail);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.add_queries(request.queries.iter().cloned());
    response.to_vec().ok()
}

fn encode(message: &Message) -> Reply {
    match message.to_vec() {
        Ok(bytes) => Reply::Answer(bytes),
        Err(_) => Reply::Drop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;

    struct Fixed;

    impl Zone for Fixed {
        fn lookup(&self, name: &str) -> Option<Vec<IpAddr>> {
            (name == "web").then(|| vec!["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()])
        }

        fn reverse(&self, ip: IpAddr) -> Option<Vec<String>> {
            (ip == "10.0.0.2".parse::<IpAddr>().unwrap()).then(|| vec!["web.net".to_owned()])
        }
    }

    fn query(name: &str, qtype: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 0x1234;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        m.to_vec().unwrap()
    }

    fn answer(bytes: &[u8]) -> Message {
        match handle(bytes, &Fixed) {
            Reply::Answer(a) => Message::from_vec(&a).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn answers_its_names_per_family() {
        let a = answer(&query("WEB.", RecordType::A));
        assert_eq!(a.metadata.id, 0x1234);
        assert_eq!(a.metadata.message_type, MessageType::Response);
        assert_eq!(a.metadata.response_code, ResponseCode::NoError);
        assert_eq!(a.answers.len(), 1);
        assert_eq!(a.answers[0].data, RData::A(A("10.0.0.2".parse().unwrap())));
        assert_eq!(a.answers[0].ttl, TTL);
        let aaaa = answer(&query("web", RecordType::AAAA));
        assert_eq!(aaaa.answers.len(), 1);
        assert_eq!(aaaa.answers[0].data, RData::AAAA(AAAA("fd00::2".parse().unwrap())));
        // A known name, a type it has nothing of: NOERROR, no answer.
        let mx = answer(&query("web", RecordType::MX));
        assert_eq!(mx.metadata.response_code, ResponseCode::NoError);
        assert!(mx.answers.is_empty());
    }

    #[test]
    fn answers_ptr_for_its_addresses_and_forwards_the_others() {
        let a = answer(&query("2.0.0.10.in-addr.arpa.", RecordType::PTR));
        assert_eq!(a.answers.len(), 1);
        assert_eq!(a.answers[0].data, RData::PTR(PTR(Name::from_ascii("web.net.").unwrap())));
        assert!(matches!(handle(&query("3.0.0.10.in-addr.arpa.", RecordType::PTR), &Fixed), Reply::Forward(_)));
        assert!(matches!(handle(&query("0.10.in-addr.arpa.", RecordType::PTR), &Fixed), Reply::Forward(_)));
    }

    #[test]
    fn forwards_other_names_and_drops_garbage() {
        assert!(matches!(handle(&query("example.com.", RecordType::A), &Fixed), Reply::Forward(_)));
        assert!(matches!(handle(b"\x00\x01", &Fixed), Reply::Drop));
        let mut response = Message::from_vec(&query("web", RecordType::A)).unwrap();
        response.metadata.message_type = MessageType::Response;
        assert!(matches!(handle(&response.to_vec().unwrap(), &Fixed), Reply::Drop), "answers are not answered");
    }

    #[test]
    fn ids_are_rewritten_and_failures_say_servfail() {
        let Reply::Forward(request) = handle(&query("example.com", RecordType::A), &Fixed) else { panic!() };
        let out = Message::from_vec(&with_id((*request).clone(), 7).unwrap()).unwrap();
        assert_eq!(out.metadata.id, 7);
        assert_eq!(out.queries, request.queries);
        let fail = Message::from_vec(&servfail(&request, 0x1234).unwrap()).unwrap();
        assert_eq!((fail.metadata.id, fail.metadata.response_code), (0x1234, ResponseCode::ServFail));
    }
}
