//! Local callers of protected ports. In strict mode the table sends this host's own processes'
//! connections to protected ports through idgate as well (they would otherwise skip
//! authorization and could forge the identity header): each is authorized by its process's
//! SPIFFE ID with the inbound policy and decision records that tunnelled callers get, then
//! connected to the service directly, without a tunnel.
use super::outbound::{Outbound, Refusal};
use crate::config::Protocol;
use crate::observe::decisions::Decision;
use crate::observe::flows::{Counted, FlowFacts};
use crate::observe::Verdict;
use crate::policy::live::Policy;
use crate::sys::socket::connect_marked;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

impl Outbound {
    /// Whether a redirected flow to `dst` is a local caller of a protected port.
    pub(super) fn is_local_protected(&self, policy: &Policy, dst: &SocketAddr) -> bool {
        self.strict && policy.authorizer.covers(dst.port()) && self.inbound.local.contains(&dst.ip())
    }

    pub(super) async fn forward_local(
        self: &Arc<Self>,
        stream: TcpStream,
        src: SocketAddr,
        dst: SocketAddr,
        d: &mut Decision,
        policy: Arc<Policy>,
    ) -> Result<(), (Option<TcpStream>, Refusal)> {
        d.direction = "local";
        let workload = match self.identities.resolve(src, dst, &policy.selector, policy.generation) {
            Ok(w) => w,
            Err(e) => return Err((Some(stream), e.into())),
        };
        let open = self.identities.open_flow(src);
        d.process = Some(super::outbound::process_label(&workload));
        d.process_info = Some(workload.process.clone());
        // Unidentified callers are refused whatever default_action says: passing them through
        // would be plaintext access to a port only authorized identities may reach.
        let Some(id) = workload.spiffe_id.clone() else { return Err((Some(stream), Refusal::NoWorkloadRule)) };
        d.source_id = Some(id.to_string());
        let inbound = &self.inbound;
        if let Some(why) = self.inputs.live.revoked().why(Some(&id), None) {
            return Err((Some(stream), Refusal::Revoked(why)));
        }
        if !policy.authorizer.allows(&dst, true, &id) {
            return Err((Some(stream), Refusal::LocalDenied { id, port: dst.port() }));
        }
        let http = policy.authorizer.protocol(dst.port()) == Protocol::Http;
        drop(policy);
        // The identity header hashes the caller's certificate, as for tunnelled callers.
        let issued = match self.inputs.credentials.workload(&id) {
            Ok(i) => i,
            Err(e) => return Err((Some(stream), Refusal::Svid(e))),
        };
        let facts = FlowFacts {
            id: d.flow.clone(),
            direction: "local",
            process: Some(workload.process.clone()),
            source: Some(id.clone()),
            serial: Some(issued.svid.serial.as_str().into()),
            destination: dst,
            peer: None,
        };
        // Registered before the service is dialled: a revocation meanwhile closes it.
        let registration = match self.inputs.registry.register_checked(facts, None, self.inputs.live.deny_list()) {
            Ok(r) => r,
            Err(why) => return Err((Some(stream), Refusal::Revoked(why))),
        };
        let connected = tokio::select! {
            connected = Box::pin(connect_marked(dst, self.inputs.mark, self.pool.limits().dial_timeout.0)) => connected,
            () = registration.flow.closed() => return Err((Some(stream), Refusal::Closed(registration.flow.closed_because().unwrap_or_default()))),
        };
        let tcp = match connected {
            Ok(tcp) => tcp,
            Err(source) => return Err((Some(stream), Refusal::LocalUnreachable { dst, source })),
        };
        if let Some(why) = registration.flow.closed_because() {
            return Err((Some(stream), Refusal::Closed(why)));
        }
        d.verdict = Verdict::Allowed;
        d.detail = Some(format!("local caller {src}"));
        self.inputs.metrics.inbound(Verdict::Allowed);
        self.inputs.decisions.record(d.clone());
        let flow = &registration.flow;
        if http {
            let cert = issued.svid.certified.cert.first().map(|c| c.to_vec()).unwrap_or_default();
            let identity = inbound.identity_header.value(self.inputs.credentials.server_id(), &id, &cert);
            inbound.clone().serve_http(stream, tcp, identity, flow).await;
        } else {
            let (mut caller, mut tcp) = (Counted::new(stream, flow.clone()), tcp);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut caller, &mut tcp) => {}
                () = flow.closed() => crate::sys::socket::set_abortive_close(caller.get_ref()),
            }
        }
        open.client_done();
        self.inputs.trail.ended(flow, Verdict::Allowed);
        Ok(())
    }
}
