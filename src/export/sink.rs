//! Where collected metrics and spans go: an OTLP exporter (HTTP/protobuf or gRPC) called from
//! heapspan's export thread, or the embedded OTLP JSON lines file. Both are driven by
//! [`super::pipeline`]; no SDK background thread is involved.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
#[cfg(any(feature = "http", feature = "grpc"))]
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::SpanData;
#[cfg(any(feature = "http", feature = "grpc"))]
use opentelemetry_sdk::trace::SpanExporter as _;
use opentelemetry_sdk::Resource;

use super::config::Resolved;
#[cfg(any(feature = "http", feature = "grpc"))]
use super::config::{Protocol, SignalSettings};
use crate::error::{Error, Result};

/// A failed export, with a short reason for the (rate-limited) warning.
#[derive(Debug)]
pub(crate) struct ExportFailed(pub(crate) String);

/// The transport.
pub(crate) enum Sink {
    /// OTLP to a collector.
    #[cfg(any(feature = "http", feature = "grpc"))]
    Otlp(Box<Otlp>),
    /// OTLP JSON lines to a file.
    File {
        out: BufWriter<File>,
        resource: ResourceAttributesWithSchema,
    },
    /// Nothing (the application's providers export, or export is off).
    None,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            #[cfg(any(feature = "http", feature = "grpc"))]
            Sink::Otlp(_) => f.write_str("Sink::Otlp"),
            Sink::File { .. } => f.write_str("Sink::File"),
            Sink::None => f.write_str("Sink::None"),
        }
    }
}

/// Where the metrics heapspan encodes itself (the allocation-size histogram) go: the same
/// endpoint and headers as the SDK's metric exporter.
#[cfg(any(feature = "http", feature = "grpc"))]
enum RawMetrics {
    #[cfg(feature = "http")]
    Http {
        url: String,
        headers: Vec<(String, String)>,
        client: super::http_client::StdHttpClient,
    },
    #[cfg(feature = "grpc")]
    Grpc {
        url: String,
        headers: Vec<(String, String)>,
    },
}

#[cfg(any(feature = "http", feature = "grpc"))]
pub(crate) struct Otlp {
    metrics: Option<opentelemetry_otlp::MetricExporter>,
    raw: Option<RawMetrics>,
    spans: Option<opentelemetry_otlp::SpanExporter>,
    /// gRPC needs a tokio runtime: a current-thread one, owned and driven by the export thread.
    #[cfg(feature = "grpc")]
    rt: Option<tokio::runtime::Runtime>,
}

fn export_err(what: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Export {
        what,
        detail: e.to_string(),
    }
}

impl Sink {
    /// Builds the sink for `cfg`; `resource` is the resource of heapspan's own providers.
    pub(crate) fn build(cfg: &Resolved, resource: &Resource) -> Result<Sink> {
        if cfg.has_endpoint() {
            #[cfg(any(feature = "http", feature = "grpc"))]
            return Otlp::build(cfg, resource).map(|o| Sink::Otlp(Box::new(o)));
            #[cfg(not(any(feature = "http", feature = "grpc")))]
            return Err(Error::InvalidConfig {
                setting: "endpoint",
                value: cfg.endpoint.clone().unwrap_or_default(),
                expected: "no endpoint: enable heapspan's `http` or `grpc` feature",
            });
        }
        if let Some(path) = &cfg.file {
            return Sink::file(path, resource);
        }
        Ok(Sink::None)
    }

    fn file(path: &Path, resource: &Resource) -> Result<Sink> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| export_err("the OTLP JSON file", format!("{}: {e}", path.display())))?;
        Ok(Sink::File {
            out: BufWriter::new(f),
            resource: resource.into(),
        })
    }

    /// Whether metrics collected by heapspan's own reader have somewhere to go.
    pub(crate) fn takes_metrics(&self) -> bool {
        match self {
            #[cfg(any(feature = "http", feature = "grpc"))]
            Sink::Otlp(o) => o.metrics.is_some(),
            Sink::File { .. } => true,
            Sink::None => false,
        }
    }

    pub(crate) fn export_metrics(&mut self, rm: &ResourceMetrics) -> Result<(), ExportFailed> {
        match self {
            #[cfg(any(feature = "http", feature = "grpc"))]
            Sink::Otlp(o) => {
                let Some(m) = &o.metrics else { return Ok(()) };
                let fut = m.export(rm);
                o.block_on(fut).map_err(|e| ExportFailed(e.to_string()))
            }
            Sink::File { out, .. } => {
                let req = ExportMetricsServiceRequest::from(rm);
                write_line(out, &req)
            }
            Sink::None => Ok(()),
        }
    }

    /// Sends a metrics request heapspan built itself (see [`super::histogram`]) to where the
    /// SDK's metrics go.
    pub(crate) fn export_raw_metrics(
        &mut self,
        req: &ExportMetricsServiceRequest,
    ) -> Result<(), ExportFailed> {
        match self {
            #[cfg(any(feature = "http", feature = "grpc"))]
            Sink::Otlp(o) => match &o.raw {
                None => Ok(()),
                #[cfg(feature = "http")]
                Some(RawMetrics::Http {
                    url,
                    headers,
                    client,
                }) => {
                    use opentelemetry_http::HttpClient;
                    use prost::Message;
                    let mut b = http::Request::post(url.as_str())
                        .header("content-type", "application/x-protobuf");
                    for (k, v) in headers {
                        b = b.header(k.as_str(), v.as_str());
                    }
                    let request = b
                        .body(opentelemetry_http::Bytes::from(req.encode_to_vec()))
                        .map_err(|e| ExportFailed(e.to_string()))?;
                    let resp = o
                        .block_on(client.send_bytes(request))
                        .map_err(|e| ExportFailed(e.to_string()))?;
                    if resp.status().is_success() {
                        Ok(())
                    } else {
                        Err(ExportFailed(format!("HTTP {}", resp.status())))
                    }
                }
                #[cfg(feature = "grpc")]
                Some(RawMetrics::Grpc { url, headers }) => {
                    use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
                    let (url, headers, req) = (url.clone(), headers.clone(), req.clone());
                    o.block_on(async move {
                        let mut client = MetricsServiceClient::connect(url)
                            .await
                            .map_err(|e| ExportFailed(e.to_string()))?;
                        let mut r = tonic::Request::new(req);
                        for (k, v) in &headers {
                            let key = tonic::metadata::MetadataKey::from_bytes(
                                k.to_ascii_lowercase().as_bytes(),
                            )
                            .map_err(|e| ExportFailed(e.to_string()))?;
                            let val = v.parse().map_err(
                                |e: tonic::metadata::errors::InvalidMetadataValue| {
                                    ExportFailed(e.to_string())
                                },
                            )?;
                            r.metadata_mut().insert(key, val);
                        }
                        client
                            .export(r)
                            .await
                            .map(|_| ())
                            .map_err(|e| ExportFailed(e.to_string()))
                    })
                }
            },
            Sink::File { out, .. } => write_line(out, req),
            Sink::None => Ok(()),
        }
    }

    pub(crate) fn export_spans(&mut self, batch: Vec<SpanData>) -> Result<(), ExportFailed> {
        match self {
            #[cfg(any(feature = "http", feature = "grpc"))]
            Sink::Otlp(o) => {
                let Some(s) = &o.spans else { return Ok(()) };
                let fut = s.export(batch);
                o.block_on(fut).map_err(|e| ExportFailed(e.to_string()))
            }
            Sink::File { out, resource } => {
                let req = ExportTraceServiceRequest {
                    resource_spans: group_spans_by_resource_and_scope(batch, resource),
                };
                write_line(out, &req)
            }
            Sink::None => Ok(()),
        }
    }

    pub(crate) fn shutdown(&mut self, timeout: Duration) {
        match self {
            #[cfg(any(feature = "http", feature = "grpc"))]
            Sink::Otlp(o) => {
                if let Some(m) = &o.metrics {
                    let _ = m.shutdown_with_timeout(timeout);
                }
                if let Some(s) = &mut o.spans {
                    let _ = s.shutdown_with_timeout(timeout);
                }
            }
            Sink::File { out, .. } => {
                let _ = timeout;
                let _ = out.flush();
            }
            Sink::None => {}
        }
    }
}

fn write_line(out: &mut BufWriter<File>, req: &impl serde::Serialize) -> Result<(), ExportFailed> {
    serde_json::to_writer(&mut *out, req).map_err(|e| ExportFailed(e.to_string()))?;
    out.write_all(b"\n")
        .and_then(|()| out.flush())
        .map_err(|e| ExportFailed(e.to_string()))
}

#[cfg(any(feature = "http", feature = "grpc"))]
impl Otlp {
    /// Builds an exporter for each signal heapspan sends itself (not one the application's own
    /// provider takes), each with its own protocol, URL, headers and timeout.
    fn build(cfg: &Resolved, resource: &Resource) -> Result<Otlp> {
        let traces = (cfg.tracer_provider.is_none())
            .then_some(&cfg.traces)
            .filter(|s| s.url.is_some());
        let metrics = (cfg.meter_provider.is_none())
            .then_some(&cfg.metrics)
            .filter(|s| s.url.is_some());
        #[cfg(feature = "grpc")]
        let rt = if [traces, metrics]
            .iter()
            .flatten()
            .any(|s| s.protocol == Protocol::Grpc)
        {
            Some(
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| export_err("the gRPC export runtime", e))?,
            )
        } else {
            None
        };
        #[cfg(feature = "grpc")]
        let _enter = rt.as_ref().map(|rt| rt.enter());
        let spans = match traces {
            Some(s) => {
                let mut e = span_exporter(s)?;
                e.set_resource(resource);
                Some(e)
            }
            None => None,
        };
        let (metrics, raw) = match metrics {
            Some(s) => {
                let (m, raw) = metric_exporter(s)?;
                (Some(m), Some(raw))
            }
            None => (None, None),
        };
        #[cfg(feature = "grpc")]
        drop(_enter);
        Ok(Otlp {
            metrics,
            raw,
            spans,
            #[cfg(feature = "grpc")]
            rt,
        })
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        #[cfg(feature = "grpc")]
        if let Some(rt) = &self.rt {
            return rt.block_on(f);
        }
        futures_executor::block_on(f)
    }
}

/// The signal's URL (set: [`Otlp::build`] only builds signals that have one).
#[cfg(any(feature = "http", feature = "grpc"))]
fn url_of(s: &SignalSettings) -> String {
    s.url.clone().unwrap_or_default()
}

/// The traces exporter of `s`'s protocol.
#[cfg(any(feature = "http", feature = "grpc"))]
fn span_exporter(s: &SignalSettings) -> Result<opentelemetry_otlp::SpanExporter> {
    use opentelemetry_otlp::WithExportConfig;
    match s.protocol {
        #[cfg(feature = "http")]
        Protocol::HttpProtobuf => {
            use opentelemetry_otlp::WithHttpConfig;
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(http_client(s)?)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(url_of(s))
                .with_timeout(s.timeout)
                .build()
                .map_err(|e| export_err("the OTLP/HTTP span exporter", e))
        }
        #[cfg(feature = "grpc")]
        Protocol::Grpc => {
            use opentelemetry_otlp::WithTonicConfig;
            let (md, force) = grpc_headers(s)?;
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(url_of(s))
                .with_timeout(s.timeout)
                .with_metadata(md)
                .with_interceptor(force)
                .build()
                .map_err(|e| export_err("the OTLP/gRPC span exporter", e))
        }
        #[allow(unreachable_patterns)]
        p => Err(unsupported(p)),
    }
}

/// The metrics exporter of `s`'s protocol, and where heapspan's own encoded metrics go.
#[cfg(any(feature = "http", feature = "grpc"))]
fn metric_exporter(s: &SignalSettings) -> Result<(opentelemetry_otlp::MetricExporter, RawMetrics)> {
    use opentelemetry_otlp::WithExportConfig;
    match s.protocol {
        #[cfg(feature = "http")]
        Protocol::HttpProtobuf => {
            use opentelemetry_otlp::WithHttpConfig;
            let m = opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_http_client(http_client(s)?)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(url_of(s))
                .with_timeout(s.timeout)
                .with_temporality(opentelemetry_sdk::metrics::Temporality::Cumulative)
                .build()
                .map_err(|e| export_err("the OTLP/HTTP metric exporter", e))?;
            let raw = RawMetrics::Http {
                url: url_of(s),
                headers: s.headers.clone(),
                client: http_client(s)?,
            };
            Ok((m, raw))
        }
        #[cfg(feature = "grpc")]
        Protocol::Grpc => {
            use opentelemetry_otlp::WithTonicConfig;
            let (md, force) = grpc_headers(s)?;
            let m = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .with_endpoint(url_of(s))
                .with_timeout(s.timeout)
                .with_metadata(md)
                .with_interceptor(force)
                .with_temporality(opentelemetry_sdk::metrics::Temporality::Cumulative)
                .build()
                .map_err(|e| export_err("the OTLP/gRPC metric exporter", e))?;
            let raw = RawMetrics::Grpc {
                url: url_of(s),
                headers: s.headers.clone(),
            };
            Ok((m, raw))
        }
        #[allow(unreachable_patterns)]
        p => Err(unsupported(p)),
    }
}

#[cfg(any(feature = "http", feature = "grpc"))]
fn unsupported(p: Protocol) -> Error {
    Error::InvalidConfig {
        setting: "protocol",
        value: p.as_str().into(),
        expected: "a protocol enabled by heapspan's features",
    }
}

/// heapspan's client, which sets the signal's resolved headers on every request: the SDK's
/// HTTP exporter adds `OTEL_EXPORTER_OTLP_*HEADERS` over the headers it is given (env winning
/// over code), so heapspan gives it none and has the client put the resolved ones (code
/// winning) last.
#[cfg(feature = "http")]
fn http_client(s: &SignalSettings) -> Result<super::http_client::StdHttpClient> {
    super::http_client::StdHttpClient::new(s.timeout, &s.headers)
        .map_err(|e| export_err("an OTLP/HTTP header", e))
}

/// The signal's headers as gRPC metadata, and an interceptor that sets them again on every
/// request: opentelemetry-otlp's tonic builder merges `OTEL_EXPORTER_OTLP_*HEADERS` over the
/// metadata it is given (env winning over code) and runs the interceptor after that, so the
/// resolved headers (code winning) are what the collector sees.
#[cfg(feature = "grpc")]
#[allow(clippy::type_complexity)]
fn grpc_headers(
    s: &SignalSettings,
) -> Result<(
    opentelemetry_otlp::tonic_types::metadata::MetadataMap,
    impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>
        + Clone
        + Send
        + Sync
        + 'static,
)> {
    use tonic::metadata::{Ascii, MetadataKey, MetadataMap, MetadataValue};
    let mut pairs: Vec<(MetadataKey<Ascii>, MetadataValue<Ascii>)> = Vec::new();
    let mut md = MetadataMap::new();
    for (k, v) in &s.headers {
        let key = MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
            .map_err(|e| export_err("a gRPC header name", e))?;
        let val = MetadataValue::try_from(v.as_str())
            .map_err(|e| export_err("a gRPC header value", e))?;
        md.insert(key.clone(), val.clone());
        pairs.push((key, val));
    }
    let force = move |mut req: tonic::Request<()>| {
        for (k, v) in &pairs {
            req.metadata_mut().insert(k.clone(), v.clone());
        }
        Ok(req)
    };
    Ok((md, force))
}

#[cfg(all(test, feature = "grpc"))]
mod tests {
    use super::*;

    #[test]
    fn grpc_requests_carry_the_resolved_headers_over_the_environments() {
        let s = SignalSettings {
            protocol: Protocol::Grpc,
            url: Some("http://127.0.0.1:4317".into()),
            headers: vec![("X-Token".into(), "code".into())],
            timeout: Duration::from_secs(1),
        };
        let (md, mut force) = grpc_headers(&s).unwrap();
        assert_eq!(md.get("x-token").unwrap(), "code");
        // As opentelemetry-otlp's own interceptor leaves it: the environment's value appended.
        let mut req = tonic::Request::new(());
        req.metadata_mut().append("x-token", "env".parse().unwrap());
        req.metadata_mut()
            .append("x-token", "code".parse().unwrap());
        let req = force(req).unwrap();
        let values: Vec<_> = req.metadata().get_all("x-token").iter().collect();
        assert_eq!(values, ["code"]);
    }

    #[test]
    fn a_header_grpc_cannot_carry_is_an_error_at_start() {
        let s = SignalSettings {
            protocol: Protocol::Grpc,
            url: None,
            headers: vec![("x".into(), "a\nb".into())],
            timeout: Duration::from_secs(1),
        };
        let e = grpc_headers(&s).err().unwrap();
        assert!(
            e.to_string()
                .starts_with("could not set up a gRPC header value"),
            "{e}"
        );
    }
}
