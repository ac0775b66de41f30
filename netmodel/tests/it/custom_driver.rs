//! A driver of one's own through [`NetworkDriver`]: a point-to-point driver (no bridge: the
//! veth's host end carries the gateway address), proving the model runs a user driver's
//! setup, connect and teardown and configures what it creates.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::{World, listen_in_ns, serve_once, talk};
use nook_netmodel::netlink::{LinkKind, NewLink};
use nook_netmodel::{
    EndpointConfig, EndpointLink, EndpointOptions, Host, Network, NetworkDriver, NetworkSpec, Sandbox, ValidationError,
};
use nook_ns::NsFd;
use nook_testutil::{require_root, unique_name};

#[derive(Debug, Default)]
struct PointToPoint {
    setups: AtomicUsize,
    teardowns: AtomicUsize,
    connects: AtomicUsize,
    disconnects: AtomicUsize,
}

impl NetworkDriver for PointToPoint {
    fn name(&self) -> &str {
        "ptp"
    }

    fn validate(&self, spec: &NetworkSpec) -> Result<(), ValidationError> {
        if spec.subnets.len() != 1 {
            return Err(ValidationError::Driver {
                driver: "ptp".into(),
                field: "subnets",
                value: spec.subnets.len().to_string(),
                source: "exactly one subnet".into(),
            });
        }
        Ok(())
    }

    fn setup(&self, _host: &Host, _spec: &NetworkSpec) -> nook_netmodel::Result<()> {
        self.setups.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn teardown(&self, _host: &Host, _spec: &NetworkSpec) -> nook_netmodel::Result<()> {
        self.teardowns.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn connect(
        &self,
        host: &Host,
        spec: &NetworkSpec,
        sandbox: &NsFd,
        endpoint: &EndpointConfig,
    ) -> nook_netmodel::Result<EndpointLink> {
        self.connects.fetch_add(1, Ordering::Relaxed);
        let mut nl = host.netlink();
        let mut link = NewLink::new(
            &endpoint.host_ifname,
            LinkKind::Veth {
                peer_name: &endpoint.ifname,
                peer_netns: Some(sandbox.as_fd()),
                peer_mtu: None,
                peer_mac: None,
            },
        );
        link.up = true;
        let index = nl.add_link(&link)?.expect("created here");
        nl.add_address(index, spec.gateway_addresses()[0])?;
        Ok(EndpointLink::with_host_side(endpoint.host_ifname.clone(), Some(index)))
    }

    fn disconnect(
        &self,
        _host: &Host,
        _spec: &NetworkSpec,
        _endpoint: &EndpointConfig,
        _link: &EndpointLink,
    ) -> nook_netmodel::Result<()> {
        self.disconnects.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[test]
fn a_custom_driver_builds_working_endpoints() {
    require_root!();
    let world = World::new();
    let driver = Arc::new(PointToPoint::default());
    let mut spec = NetworkSpec::custom(unique_name("ptp").parse().unwrap(), driver.clone());
    spec.subnet("10.91.0.0/24".parse().unwrap(), None);
    let net = Network::create(&world.host, &spec).unwrap();
    assert_eq!(driver.setups.load(Ordering::Relaxed), 1);

    let mut s = Sandbox::none("ptp").unwrap();
    let ep = s.connect(&net, &EndpointOptions::new()).unwrap();
    assert_eq!(driver.connects.load(Ordering::Relaxed), 1);
    let gateway = ep.gateways[0];
    let server = serve_once(listen_in_ns(&world.host_ns, SocketAddr::new(gateway, 7100)));
    assert_eq!(talk(s.netns(), SocketAddr::new(gateway, 7100), "p2p").unwrap(), "echo: p2p");
    let (_, peer) = server.join().unwrap();
    assert_eq!(peer.ip(), ep.addresses[0].addr());

    s.remove().unwrap();
    assert_eq!(driver.disconnects.load(Ordering::Relaxed), 1);
    net.remove().unwrap();
    assert_eq!(driver.teardowns.load(Ordering::Relaxed), 1);

    // The driver's own validation runs with the generic one, before anything changes.
    let mut spec = NetworkSpec::custom(unique_name("ptp").parse().unwrap(), driver.clone());
    spec.subnet("10.92.0.0/24".parse().unwrap(), None).subnet("10.93.0.0/24".parse().unwrap(), None);
    assert!(matches!(spec.validate(), Err(ValidationError::Driver { field: "subnets", .. })));
    assert!(Network::create(&world.host, &spec).is_err());
    assert_eq!(driver.setups.load(Ordering::Relaxed), 1);
}
