//! Where and how to reach etcd: [`EtcdConfig`], built by hand or from calico/node's
//! environment variables ([`EtcdConfig::from_env`]).
//!
//! Rules checked by [`EtcdConfig::validate`] (also run by `EtcdClient::connect`):
//! * at least one endpoint; each is `http://host:port` or `https://host:port` (a bare
//!   `host:port` means `http://`, or `https://` when a CA file is configured);
//! * `https://` endpoints need a CA file: podbgp trusts only the configured CA (etcd
//!   clusters run their own), never an OS or built-in root store;
//! * a client certificate and its key come together, and only with `https://` endpoints
//!   (certificates given for a plain-text cluster are a misconfiguration, not something to
//!   ignore silently);
//! * a user name comes with a password.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// `ETCD_ENDPOINTS`: comma-separated endpoint URLs.
pub const ENV_ENDPOINTS: &str = "ETCD_ENDPOINTS";
/// `ETCD_CA_CERT_FILE`: PEM file of the CA that signed the etcd server certificates.
pub const ENV_CA_CERT_FILE: &str = "ETCD_CA_CERT_FILE";
/// `ETCD_CERT_FILE`: PEM client certificate (etcd `--client-cert-auth`).
pub const ENV_CERT_FILE: &str = "ETCD_CERT_FILE";
/// `ETCD_KEY_FILE`: PEM private key of the client certificate.
pub const ENV_KEY_FILE: &str = "ETCD_KEY_FILE";
/// `ETCD_USERNAME`: etcd user for password authentication.
pub const ENV_USERNAME: &str = "ETCD_USERNAME";
/// `ETCD_PASSWORD`: that user's password.
pub const ENV_PASSWORD: &str = "ETCD_PASSWORD";

/// etcd user name and password (etcd's `Auth.Authenticate`).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How to reach an etcd v3 cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// Endpoint URLs, tried in this order on every (re)connect.
    pub endpoints: Vec<String>,
    /// PEM CA certificate that signed the servers' certificates (required for `https://`).
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate; requires [`client_key`](Self::client_key).
    pub client_cert: Option<PathBuf>,
    /// PEM private key of [`client_cert`](Self::client_cert).
    pub client_key: Option<PathBuf>,
    /// User and password, when the cluster has authentication enabled.
    pub credentials: Option<Credentials>,
    /// Limit for establishing one connection (TCP, TLS and HTTP/2) to one endpoint.
    pub connect_timeout: Duration,
    /// Deadline of each unary request (one range page, a put, ...), sent to etcd as the
    /// gRPC deadline. Watches have none.
    pub request_timeout: Duration,
    /// Keys per range page (etcd `limit`). Pages are pinned to the first page's revision.
    pub page_size: i64,
}

impl EtcdConfig {
    /// Default [`connect_timeout`](Self::connect_timeout).
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default [`request_timeout`](Self::request_timeout).
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
    /// Default [`page_size`](Self::page_size).
    pub const DEFAULT_PAGE_SIZE: i64 = 500;

    /// A plain-text configuration for `endpoints` with default timeouts.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> EtcdConfig {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ca_cert: None,
            client_cert: None,
            client_key: None,
            credentials: None,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            page_size: Self::DEFAULT_PAGE_SIZE,
        }
    }

    /// Reads calico/node's variables from the process environment: `ETCD_ENDPOINTS`
    /// (required), `ETCD_CA_CERT_FILE`, `ETCD_CERT_FILE`, `ETCD_KEY_FILE`, `ETCD_USERNAME`,
    /// `ETCD_PASSWORD`. Empty values count as unset. Errors name the variable.
    pub fn from_env() -> Result<EtcdConfig, ConfigError> {
        Self::from_vars(|name| std::env::var_os(name))
    }

    /// [`from_env`](Self::from_env) over any variable source (`lookup(name)`).
    pub fn from_vars(
        lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<EtcdConfig, ConfigError> {
        let get = |var: &'static str| -> Result<Option<String>, ConfigError> {
            match lookup(var) {
                None => Ok(None),
                Some(v) => match v.into_string() {
                    Ok(s) if s.trim().is_empty() => Ok(None),
                    Ok(s) => Ok(Some(s)),
                    Err(_) => Err(ConfigError::NotUnicode { var }),
                },
            }
        };
        let endpoints =
            get(ENV_ENDPOINTS)?.ok_or(ConfigError::MissingVar { var: ENV_ENDPOINTS })?;
        let mut cfg = EtcdConfig::new(
            endpoints
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_string),
        );
        cfg.ca_cert = get(ENV_CA_CERT_FILE)?.map(PathBuf::from);
        cfg.client_cert = get(ENV_CERT_FILE)?.map(PathBuf::from);
        cfg.client_key = get(ENV_KEY_FILE)?.map(PathBuf::from);
        cfg.credentials = match (get(ENV_USERNAME)?, get(ENV_PASSWORD)?) {
            (None, None) => None,
            (Some(username), Some(password)) => Some(Credentials { username, password }),
            (Some(_), None) => {
                return Err(ConfigError::MissingVar { var: ENV_PASSWORD });
            }
            (None, Some(_)) => {
                return Err(ConfigError::MissingVar { var: ENV_USERNAME });
            }
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the rules in the module documentation.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.endpoints.is_empty() {
            return Err(ConfigError::NoEndpoints);
        }
        let mut any_https = false;
        for e in &self.endpoints {
            match self.endpoint_url(e)? {
                url if url.starts_with("https://") => any_https = true,
                _ => {}
            }
        }
        if any_https && self.ca_cert.is_none() {
            return Err(ConfigError::HttpsWithoutCa);
        }
        match (&self.client_cert, &self.client_key) {
            (Some(_), None) => return Err(ConfigError::CertWithoutKey),
            (None, Some(_)) => return Err(ConfigError::KeyWithoutCert),
            _ => {}
        }
        if !any_https && (self.client_cert.is_some() || self.ca_cert.is_some()) {
            return Err(ConfigError::TlsFilesWithoutHttps);
        }
        if let Some(c) = &self.credentials
            && c.username.is_empty()
        {
            return Err(ConfigError::EmptyUsername);
        }
        if self.page_size <= 0 {
            return Err(ConfigError::BadPageSize {
                page_size: self.page_size,
            });
        }
        Ok(())
    }

    /// The URL used for `endpoint`: as given when it has a scheme, otherwise `http://` or,
    /// with a CA file configured, `https://` in front.
    pub fn endpoint_url(&self, endpoint: &str) -> Result<String, ConfigError> {
        let bad = |reason: &'static str| ConfigError::BadEndpoint {
            endpoint: endpoint.to_string(),
            reason,
        };
        let url = if endpoint.contains("://") {
            endpoint.to_string()
        } else if self.ca_cert.is_some() {
            format!("https://{endpoint}")
        } else {
            format!("http://{endpoint}")
        };
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| bad("the scheme must be http or https"))?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        if authority.contains('/') {
            return Err(bad("etcd endpoints have no path"));
        }
        Ok(url)
    }
}

/// An invalid [`EtcdConfig`]; environment problems name the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{var} is not set (calico/node's etcd settings: {ENV_ENDPOINTS}, ...)")]
    MissingVar { var: &'static str },
    #[error("{var} is not valid UTF-8")]
    NotUnicode { var: &'static str },
    #[error("no etcd endpoint given ({ENV_ENDPOINTS} is empty)")]
    NoEndpoints,
    #[error("etcd endpoint {endpoint:?} ({ENV_ENDPOINTS}): {reason}")]
    BadEndpoint {
        endpoint: String,
        reason: &'static str,
    },
    #[error(
        "an https:// etcd endpoint needs {ENV_CA_CERT_FILE} (only the configured CA is trusted)"
    )]
    HttpsWithoutCa,
    #[error("{ENV_CERT_FILE} is set but {ENV_KEY_FILE} is not")]
    CertWithoutKey,
    #[error("{ENV_KEY_FILE} is set but {ENV_CERT_FILE} is not")]
    KeyWithoutCert,
    #[error(
        "{ENV_CA_CERT_FILE}/{ENV_CERT_FILE} are set but no endpoint in {ENV_ENDPOINTS} uses https://"
    )]
    TlsFilesWithoutHttps,
    #[error("{ENV_USERNAME} is empty")]
    EmptyUsername,
    #[error("etcd range page size must be positive, got {page_size}")]
    BadPageSize { page_size: i64 },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::ffi::OsString;

    fn from(vars: &[(&str, &str)]) -> Result<EtcdConfig, ConfigError> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        EtcdConfig::from_vars(|name| map.get(name).cloned())
    }

    #[test]
    fn endpoints_are_split_and_trimmed() {
        let cfg = from(&[(
            ENV_ENDPOINTS,
            " http://10.0.0.1:2379, http://10.0.0.2:2379 ,,",
        )])
        .unwrap();
        assert_eq!(
            cfg.endpoints,
            ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
        );
        assert_eq!(cfg.credentials, None);
    }

    #[test]
    fn missing_or_empty_endpoints_name_the_variable() {
        assert_eq!(
            from(&[]),
            Err(ConfigError::MissingVar { var: ENV_ENDPOINTS })
        );
        assert_eq!(
            from(&[(ENV_ENDPOINTS, "  ")]),
            Err(ConfigError::MissingVar { var: ENV_ENDPOINTS })
        );
        assert_eq!(from(&[(ENV_ENDPOINTS, ",")]), Err(ConfigError::NoEndpoints));
        let msg = from(&[]).unwrap_err().to_string();
        assert!(msg.contains("ETCD_ENDPOINTS"), "{msg}");
    }

    #[test]
    fn tls_files_are_read_and_checked() {
        let cfg = from(&[
            (ENV_ENDPOINTS, "https://etcd:2379"),
            (ENV_CA_CERT_FILE, "/etc/calico/ca.pem"),
            (ENV_CERT_FILE, "/etc/calico/cert.pem"),
            (ENV_KEY_FILE, "/etc/calico/key.pem"),
        ])
        .unwrap();
        assert_eq!(cfg.ca_cert, Some(PathBuf::from("/etc/calico/ca.pem")));
        assert_eq!(cfg.client_key, Some(PathBuf::from("/etc/calico/key.pem")));

        let err = from(&[
            (ENV_ENDPOINTS, "https://etcd:2379"),
            (ENV_CA_CERT_FILE, "/ca.pem"),
            (ENV_CERT_FILE, "/cert.pem"),
        ])
        .unwrap_err();
        assert_eq!(err, ConfigError::CertWithoutKey);
        assert!(err.to_string().contains("ETCD_KEY_FILE"));

        let err = from(&[(ENV_ENDPOINTS, "https://etcd:2379")]).unwrap_err();
        assert!(err.to_string().contains("ETCD_CA_CERT_FILE"), "{err}");

        let err = from(&[
            (ENV_ENDPOINTS, "http://etcd:2379"),
            (ENV_CA_CERT_FILE, "/ca.pem"),
        ])
        .unwrap_err();
        assert_eq!(err, ConfigError::TlsFilesWithoutHttps);
    }

    #[test]
    fn scheme_defaults_follow_the_ca_file() {
        let cfg = from(&[(ENV_ENDPOINTS, "127.0.0.1:2379")]).unwrap();
        assert_eq!(
            cfg.endpoint_url(&cfg.endpoints[0]).unwrap(),
            "http://127.0.0.1:2379"
        );
        let cfg = from(&[
            (ENV_ENDPOINTS, "127.0.0.1:2379"),
            (ENV_CA_CERT_FILE, "/ca.pem"),
        ])
        .unwrap();
        assert_eq!(
            cfg.endpoint_url(&cfg.endpoints[0]).unwrap(),
            "https://127.0.0.1:2379"
        );
        let err = from(&[(ENV_ENDPOINTS, "unix:///run/etcd.sock")]).unwrap_err();
        assert!(matches!(err, ConfigError::BadEndpoint { .. }), "{err}");
    }

    #[test]
    fn credentials_need_both_variables() {
        let cfg = from(&[
            (ENV_ENDPOINTS, "http://etcd:2379"),
            (ENV_USERNAME, "calico"),
            (ENV_PASSWORD, "s3cret"),
        ])
        .unwrap();
        let creds = cfg.credentials.unwrap();
        assert_eq!(creds.username, "calico");
        assert!(!format!("{creds:?}").contains("s3cret"));
        assert_eq!(
            from(&[
                (ENV_ENDPOINTS, "http://etcd:2379"),
                (ENV_USERNAME, "calico")
            ]),
            Err(ConfigError::MissingVar { var: ENV_PASSWORD })
        );
        assert_eq!(
            from(&[(ENV_ENDPOINTS, "http://etcd:2379"), (ENV_PASSWORD, "x")]),
            Err(ConfigError::MissingVar { var: ENV_USERNAME })
        );
    }
}
