//! The middleware trait object a plugin hands to the host (ABI 1.2), and the plain data it is
//! called with and answers.

use abi_stable::{
    sabi_trait,
    std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec, Tuple2},
    StableAbi,
};
use async_ffi::BorrowingFfiFuture;

use crate::error::PluginError;

/// What a middleware is told about the request it runs for. Everything is lent by the host for
/// the call: the plugin copies what it keeps.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, Default)]
pub struct MiddlewareRequest<'a> {
    /// Upper-case HTTP method.
    pub method: RStr<'a>,
    /// Canonical path, without the query.
    pub path: RStr<'a>,
    /// Request headers, lower-case names, in the order received. The `authorization`, `cookie`
    /// and `proxy-authorization` headers and the configured token header are withheld.
    pub headers: RSlice<'a, Tuple2<RStr<'a>, RStr<'a>>>,
    /// The query string, without the `?` (empty when there is none).
    pub query: RStr<'a>,
    /// The address of the client that sent the request to the server (written as text only when
    /// the plugin asks for it).
    pub client: ClientAddr,
    /// The authenticated user (the JSON object its provider vouched for); `None` on a public route.
    pub user: ROption<RStr<'a>>,
    /// The provider instance that authenticated the user; `None` on a public route.
    pub provider: ROption<RStr<'a>>,
    /// `true` when the request is only being explained (`/api/admin/explain`): answer as for a
    /// real request, but change no state (count nothing, take no tokens from a bucket).
    pub dry_run: bool,
}

/// A client's IP address as it crosses the boundary: its bytes, not its text.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientAddr {
    /// 4 (IPv4: the first 4 bytes of `octets`), 6 (IPv6), or 0 when the server does not know it.
    pub family: u8,
    /// The address, in network order.
    pub octets: [u8; 16],
}

impl ClientAddr {
    /// The address of `ip`.
    pub fn new(ip: std::net::IpAddr) -> ClientAddr {
        let mut octets = [0u8; 16];
        match ip {
            std::net::IpAddr::V4(v4) => {
                octets[..4].copy_from_slice(&v4.octets());
                ClientAddr { family: 4, octets }
            }
            std::net::IpAddr::V6(v6) => ClientAddr {
                family: 6,
                octets: v6.octets(),
            },
        }
    }

    /// The address; `None` when the server does not know it.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match self.family {
            4 => Some(std::net::IpAddr::V4(std::net::Ipv4Addr::new(
                self.octets[0],
                self.octets[1],
                self.octets[2],
                self.octets[3],
            ))),
            6 => Some(std::net::IpAddr::V6(std::net::Ipv6Addr::from(self.octets))),
            _ => None,
        }
    }
}

/// A complete answer a middleware gives instead of letting the request through.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq, Eq)]
pub struct MiddlewareAnswer {
    /// Status code: a final one, 200–599 (anything else is answered 500; an informational 1xx
    /// is not an answer).
    pub status: u16,
    /// Response headers.
    pub headers: RVec<Tuple2<RString, RString>>,
    /// Body bytes.
    pub body: RVec<u8>,
}

/// What `on_request` decided.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestOutcome {
    /// `Some`: the request ends here with this answer; no later middleware and no route runs.
    pub answer: ROption<MiddlewareAnswer>,
    /// Headers set on the request sent onward (replacing any of the same name), applied in order.
    pub set_headers: RVec<Tuple2<RString, RString>>,
    /// Headers removed from the request sent onward, applied before `set_headers`.
    pub remove_headers: RVec<RString>,
    /// Headers added to the response the client gets, whoever answers it.
    pub response_headers: RVec<Tuple2<RString, RString>>,
}

/// The status and headers of the response about to be sent, lent by the host for the call.
#[repr(C)]
#[derive(StableAbi, Clone, Copy, Debug, Default)]
pub struct ResponseHead<'a> {
    /// Status code.
    pub status: u16,
    /// Response headers with lower-case names (values that are not visible ASCII are left out).
    pub headers: RSlice<'a, Tuple2<RStr<'a>, RStr<'a>>>,
}

/// What `on_response` changes in the response head.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseEdit {
    /// Headers set (replacing any of the same name), applied in order.
    pub set_headers: RVec<Tuple2<RString, RString>>,
    /// Headers removed, applied before `set_headers`.
    pub remove_headers: RVec<RString>,
}

/// One configured middleware instance, as the host sees it (ABI 1.2).
///
/// Plugin authors implement [`crate::RequestMiddleware`] instead; [`crate::export_middleware!`]
/// adapts it. Methods are only ever appended (after `wants_response`) in a minor version, each
/// with a default that a host uses when an older plugin's table lacks it.
#[sabi_trait]
pub trait Middleware: Send + Sync {
    /// The synchronous form of `on_request`, asked first: `RSome` with the outcome when the
    /// instance decides from the request alone, without waiting on anything (the host then builds
    /// no future for the call); `RNone` to be called on `on_request`. It must not block: it runs
    /// on the host's runtime thread, where no time limit can interrupt it. An answer given here
    /// holds no slot of the instance's in-flight limit (it is over when the call returns).
    fn on_request_now<'a>(
        &'a self,
        request: MiddlewareRequest<'a>,
    ) -> ROption<RResult<RequestOutcome, PluginError>>;

    /// Runs after the request was authenticated and authorized, before the route: continue
    /// (changing request headers sent onward, adding response headers) or answer. Called only
    /// when `on_request_now` answered `RNone`.
    ///
    /// The request is lent for the call: the future may borrow it, and the host keeps it alive
    /// until the future is dropped.
    fn on_request<'a>(
        &'a self,
        request: MiddlewareRequest<'a>,
    ) -> BorrowingFfiFuture<'a, RResult<RequestOutcome, PluginError>>;

    /// Runs on the response about to be sent, for an instance whose `wants_response` is `true`.
    fn on_response<'a>(
        &'a self,
        request: MiddlewareRequest<'a>,
        response: ResponseHead<'a>,
    ) -> BorrowingFfiFuture<'a, RResult<ResponseEdit, PluginError>>;

    /// Whether the host calls `on_response` (asked once, when the instance is built).
    #[sabi(last_prefix_field)]
    fn wants_response(&self) -> bool;
}

/// A middleware instance as returned by `new_middleware`.
pub type MiddlewareBox = Middleware_TO<'static, RBox<()>>;

#[cfg(test)]
mod tests {
    use super::ClientAddr;

    #[test]
    fn a_client_address_crosses_as_bytes_and_comes_back_whole() {
        for text in [
            "192.0.2.7",
            "0.0.0.0",
            "255.255.255.255",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "::",
        ] {
            let ip: std::net::IpAddr = text.parse().unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
            assert_eq!(ClientAddr::new(ip).ip(), Some(ip), "{text}");
        }
        assert_eq!(ClientAddr::default().ip(), None);
    }
}
