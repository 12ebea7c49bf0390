//! Just enough protobuf wire-format reading to pull a few top-level fields out of a message
//! without decoding it: a simulated proxy reads a cluster's name, discovery type and EDS
//! service name, and a ClusterLoadAssignment's cluster name, thousands of times per push,
//! and a full `prost` decode of every cluster would make the load client, not the control
//! plane, the thing being measured.

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScanError {
    #[error("truncated protobuf message (the control plane sent a malformed resource)")]
    Truncated,
    #[error("unsupported protobuf wire type {0} (the control plane sent a malformed resource)")]
    WireType(u64),
}

/// A top-level field's value: a varint or the bytes of a length-delimited field.
#[derive(Debug, PartialEq)]
pub enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, ScanError> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or(ScanError::Truncated)?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err(ScanError::Truncated)
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], ScanError> {
    let end = pos.checked_add(n).ok_or(ScanError::Truncated)?;
    let s = buf.get(*pos..end).ok_or(ScanError::Truncated)?;
    *pos = end;
    Ok(s)
}

/// Calls `f(field number, value)` for every top-level field of `msg`, in wire order.
pub fn fields<'a>(msg: &'a [u8], mut f: impl FnMut(u64, Value<'a>)) -> Result<(), ScanError> {
    let mut pos = 0;
    while pos < msg.len() {
        let key = varint(msg, &mut pos)?;
        let (field, wire) = (key >> 3, key & 7);
        let value = match wire {
            0 => Value::Varint(varint(msg, &mut pos)?),
            1 => {
                take(msg, &mut pos, 8)?;
                Value::Fixed
            }
            2 => {
                let n =
                    usize::try_from(varint(msg, &mut pos)?).map_err(|_| ScanError::Truncated)?;
                Value::Bytes(take(msg, &mut pos, n)?)
            }
            5 => {
                take(msg, &mut pos, 4)?;
                Value::Fixed
            }
            w => return Err(ScanError::WireType(w)),
        };
        f(field, value);
    }
    Ok(())
}

/// The first length-delimited field numbered `number` (empty when absent).
pub fn bytes_field(msg: &[u8], number: u64) -> Result<&[u8], ScanError> {
    let mut out = None;
    fields(msg, |n, v| {
        if let (true, None, Value::Bytes(b)) = (n == number, &out, v) {
            out = Some(b);
        }
    })?;
    Ok(out.unwrap_or_default())
}

/// Envoy's `Cluster.DiscoveryType.EDS`.
const EDS: u64 = 3;

/// The ClusterLoadAssignment name a proxy asks for when it receives `cluster`, if the
/// cluster is an EDS cluster: `eds_cluster_config.service_name`, else the cluster's name.
pub fn eds_name(cluster: &[u8]) -> Result<Option<&[u8]>, ScanError> {
    let (mut name, mut is_eds, mut service) = (None, false, None);
    let mut nested = Ok(());
    fields(cluster, |n, v| match (n, v) {
        (1, Value::Bytes(b)) => name = Some(b),
        (2, Value::Varint(t)) => is_eds = t == EDS,
        (3, Value::Bytes(b)) => match bytes_field(b, 2) {
            Ok(s) if !s.is_empty() => service = Some(s),
            Ok(_) => {}
            Err(e) => nested = Err(e),
        },
        _ => {}
    })?;
    nested?;
    Ok(if is_eds { service.or(name) } else { None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::cluster::{
        ClusterDiscoveryType, DiscoveryType, EdsClusterConfig,
    };
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use prost::Message;

    fn cluster(name: &str, t: DiscoveryType, service: &str) -> Vec<u8> {
        Cluster {
            name: name.into(),
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(t as i32)),
            eds_cluster_config: Some(EdsClusterConfig {
                service_name: service.into(),
                ..Default::default()
            }),
            connect_timeout: Some(envoy_types::pb::google::protobuf::Duration {
                seconds: 10,
                nanos: 5,
            }),
            ..Default::default()
        }
        .encode_to_vec()
    }

    #[test]
    fn reads_what_prost_wrote() {
        let c = cluster("outbound|80||a", DiscoveryType::Eds, "");
        assert_eq!(eds_name(&c), Ok(Some(&b"outbound|80||a"[..])));
        let c = cluster("outbound|80||a", DiscoveryType::Eds, "svc-a");
        assert_eq!(eds_name(&c), Ok(Some(&b"svc-a"[..])));
        let c = cluster("PassthroughCluster", DiscoveryType::OriginalDst, "");
        assert_eq!(eds_name(&c), Ok(None));
        let cla = ClusterLoadAssignment {
            cluster_name: "outbound|80||b".into(),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(bytes_field(&cla, 1), Ok(&b"outbound|80||b"[..]));
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let c = cluster("outbound|80||a", DiscoveryType::Eds, "x");
        for cut in 1..c.len() {
            let _ = eds_name(&c[..cut]);
        }
        assert_eq!(eds_name(&c[..c.len() - 1]), Err(ScanError::Truncated));
    }
}
