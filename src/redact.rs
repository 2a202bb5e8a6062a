//! Secret detection and redaction for memory text and JSON (content, tags, metadata).
//!
//! Agents paste whatever they saw into memory: shell transcripts, config files, stack
//! traces. A memory store that indexes them (FTS5 shadow table, embeddings) would keep
//! every API key and password forever. This module finds secrets by pattern and replaces
//! them before anything is written; the `memories` table's `secrets` option
//! ([`SecretPolicy`]) chooses between redacting (default), rejecting the row, or allowing.
//!
//! # Replacement format
//!
//! Each secret becomes `[REDACTED:<kind>]` (see [`marker`]). Where the secret is one part
//! of a larger construct only that part is replaced, so the memory keeps its meaning:
//!
//! * `postgres://bob:hunter2@db:5432/app` -> `postgres://bob:[REDACTED:url_password]@db:5432/app`
//! * `password = "hunter2"` -> `password = "[REDACTED:password_assignment]"`
//! * `...;AccountKey=<88 chars>;EndpointSuffix=...` -> `...;AccountKey=[REDACTED:azure_account_key];EndpointSuffix=...`
//! * `https://hooks.slack.com/services/T0/B0/XX` -> `https://hooks.slack.com/services/[REDACTED:slack_webhook]`
//!
//! Markers are never detected again: redacting redacted text changes nothing.
//!
//! # Kinds ([`KINDS`]), most specific first
//!
//! | kind | what | shape (source) |
//! |---|---|---|
//! | `gcp_service_account_key` | `"private_key"` of a Google service-account JSON key file (value only) | `"private_key": "-----BEGIN PRIVATE KEY-----\n..."` |
//! | `private_key` | PEM private key block (RSA, EC, DSA, OPENSSH, PGP, ENCRYPTED, PKCS#8), BEGIN to END; a block without END runs to the end of its base64 body | RFC 7468 |
//! | `age_secret_key` | age encryption secret key | `AGE-SECRET-KEY-1` + 58 bech32 chars |
//! | `aws_access_key_id` | AWS access key id | `AKIA`/`ASIA`/`ABIA`/`ACCA`/`A3T?` + 16 base32 chars |
//! | `aws_secret_access_key` | AWS secret access key after an `aws_secret_access_key`-like name | 40 base64 chars |
//! | `azure_account_key` | `AccountKey=` / `SharedAccessKey=` of an Azure connection string (value only) | base64 |
//! | `gcp_api_key` | Google API key | `AIza` + 35 chars |
//! | `google_oauth_client_secret` | Google OAuth client secret | `GOCSPX-` + 28 chars |
//! | `google_oauth_access_token` | Google OAuth access token | `ya29.` + 20+ chars |
//! | `github_token` | GitHub classic PAT / OAuth / user-to-server / server-to-server / refresh token | `ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_` + 36+ alphanumerics |
//! | `github_fine_grained_token` | GitHub fine-grained PAT | `github_pat_` + 60+ chars |
//! | `gitlab_token` | GitLab personal/deploy/runner/trigger/feed tokens | `glpat-`, `gldt-`, `glrt-`, `glptt-`, `glft-`, `glsoat-`, `glcbt-` + 20+ chars |
//! | `slack_token` | Slack bot/user/app/refresh tokens | `xoxb-`, `xoxp-`, `xoxa-`, `xoxr-`, `xoxs-`, `xoxe-`, `xoxo-`, `xapp-` |
//! | `slack_webhook` | Slack incoming-webhook path (URL host kept) | `https://hooks.slack.com/services/...` |
//! | `anthropic_api_key` | Anthropic API / admin key | `sk-ant-` + 32+ chars |
//! | `openai_api_key` | OpenAI project / service-account / admin / legacy key | `sk-proj-`, `sk-svcacct-`, `sk-admin-` + 40+; `sk-` + 32+ alphanumerics |
//! | `stripe_secret_key` | Stripe secret / restricted key, webhook signing secret | `sk_live_`, `sk_test_`, `rk_live_`, `rk_test_`, `whsec_` |
//! | `twilio_api_key` | Twilio API key SID | `SK` + 32 hex |
//! | `sendgrid_api_key` | SendGrid API key | `SG.` + 22 + `.` + 43 chars |
//! | `npm_token` | npm access token | `npm_` + 36 alphanumerics |
//! | `pypi_token` | PyPI / TestPyPI API token (macaroon) | `pypi-AgE` + 50+ chars |
//! | `huggingface_token` | Hugging Face user access token | `hf_` + 34-40 alphanumerics |
//! | `discord_bot_token` | Discord bot token | base64 user id `.` 6 chars `.` 27-40 chars |
//! | `discord_webhook` | Discord webhook token (URL and webhook id kept) | `https://discord.com/api/webhooks/<id>/<token>` |
//! | `telegram_bot_token` | Telegram bot token | `<8-10 digit bot id>:AA` + 33 chars |
//! | `shopify_token` | Shopify access / custom-app / private-app / shared secret | `shpat_`, `shpca_`, `shppa_`, `shpss_` + 32 hex |
//! | `digitalocean_token` | DigitalOcean personal / OAuth / refresh token | `dop_v1_`, `doo_v1_`, `dor_v1_` + 64 hex |
//! | `azure_ad_client_secret` | Microsoft Entra (Azure AD) client secret | 3 chars, a digit, `Q~`, 31-34 chars |
//! | `azure_sas_signature` | `sig=` of an Azure shared access signature (URL or SAS token) | URL-encoded base64 |
//! | `alibaba_access_key_id` | Alibaba Cloud AccessKey id | `LTAI` + 20 |
//! | `heroku_api_key` | Heroku API key (v2) | `HRKU-AA` + 58 |
//! | `flyio_token` | Fly.io tokens | `fo1_` + 43, `fm1a_`/`fm2_` + base64 |
//! | `cloudflare_origin_ca_key` | Cloudflare Origin CA key | `v1.0-` + 24 hex `-` 146 hex |
//! | `netlify_token` | Netlify personal / OAuth tokens | `nfp_`, `nfc_`, `nfo_`, `nfu_` + 36-40 |
//! | `supabase_token` | Supabase access / secret keys | `sbp_` + 40 hex, `sb_secret_` |
//! | `terraform_cloud_token` | Terraform Cloud / Enterprise API token | 14 chars `.atlasv1.` 60-70 chars |
//! | `vault_token` | HashiCorp Vault service / batch / recovery token | `hvs.`, `hvb.`, `hvr.` + 24+ |
//! | `pulumi_token` | Pulumi access token | `pul-` + 40 hex |
//! | `doppler_token` | Doppler tokens | `dp.pt.`, `dp.st.`, `dp.sa.`, `dp.ct.`... + 40-44 |
//! | `onepassword_token` | 1Password service-account token, account secret key | `ops_eyJ` + base64; `A3-` + groups |
//! | `databricks_token` | Databricks personal access token | `dapi` + 32 hex |
//! | `planetscale_token` | PlanetScale service token, password, OAuth token | `pscale_tkn_`, `pscale_pw_`, `pscale_oauth_` |
//! | `neon_api_key` | Neon API key | `napi_` + 64 |
//! | `tailscale_key` | Tailscale auth / API / OAuth client keys | `tskey-auth-`, `tskey-api-`, `tskey-client-`... |
//! | `docker_hub_token` | Docker Hub personal / organisation access token | `dckr_pat_`, `dckr_oat_` |
//! | `docker_auth` | `"auth"` of a Docker `config.json` `auths` entry (value only) | base64 `user:password` |
//! | `openshift_token` | OpenShift user token | `sha256~` + 43 |
//! | `bitbucket_token` | Bitbucket app password / access token | `ATBB`, `ATCT` + 32+ |
//! | `atlassian_api_token` | Atlassian (Jira, Confluence) API token | `ATATT3` + 150-260 |
//! | `circleci_token` | CircleCI personal / project token | `CCIPAT_`, `CCIPRJ_` |
//! | `buildkite_token` | Buildkite API / cluster token | `bkua_`, `bkct_` + 40 hex |
//! | `rubygems_token` | RubyGems API key | `rubygems_` + 48 hex |
//! | `nuget_api_key` | NuGet API key | `oy2` + 43 |
//! | `clojars_token` | Clojars deploy token | `CLOJARS_` + 60 |
//! | `artifactory_token` | JFrog Artifactory API key / reference token | `AKCp` + 69, `cmVmd` + 59 |
//! | `sourcegraph_token` | Sourcegraph access token | `sgp_` + hex |
//! | `sonarqube_token` | SonarQube user / project / analysis token | `squ_`, `sqp_`, `sqa_` + 40 hex |
//! | `postman_api_key` | Postman API key | `PMAK-` + 24 hex `-` 34 hex |
//! | `readme_api_key` | ReadMe API key | `rdme_` + 70 |
//! | `infracost_api_key` | Infracost API key | `ico-` + 32 |
//! | `mailgun_key` | Mailgun private API key, webhook signing key | `key-` + 32 hex; 32 hex `-` 8 hex `-` 8 hex |
//! | `mailchimp_api_key` | Mailchimp API key | 32 hex + `-us` + data centre |
//! | `brevo_api_key` | Brevo (Sendinblue) API / SMTP key | `xkeysib-`, `xsmtpsib-` |
//! | `square_token` | Square access token, OAuth application secret | `EAAA`, `sq0atp-`, `sq0csp-` |
//! | `braintree_token` | Braintree / PayPal access token | `access_token$production$...` |
//! | `hubspot_token` | HubSpot private-app token | `pat-na1-` + UUID |
//! | `groq_api_key` | Groq API key | `gsk_` + 52 |
//! | `replicate_token` | Replicate API token | `r8_` + 37 |
//! | `perplexity_api_key` | Perplexity API key | `pplx-` + 48 |
//! | `xai_api_key` | xAI API key | `xai-` + 80 |
//! | `langsmith_api_key` | LangSmith API key | `lsv2_pt_`, `lsv2_sk_` |
//! | `pinecone_api_key` | Pinecone API key | `pcsk_` |
//! | `sentry_token` | Sentry user / org auth token | `sntryu_`, `sntrys_` |
//! | `sentry_dsn` | key of a Sentry DSN (URL kept) | `https://<32 hex>@o<org>.ingest.sentry.io/<project>` |
//! | `grafana_token` | Grafana Cloud / service-account token, Grafana API key | `glc_`, `glsa_`, `eyJrIjoi` |
//! | `new_relic_key` | New Relic user / insert / browser keys, license key | `NRAK-`, `NRII-`, `NRJS-`...; 36 hex + `NRAL` |
//! | `dynatrace_token` | Dynatrace API token | `dt0c01.` + 24 `.` 64 |
//! | `linear_api_key` | Linear API key / OAuth token | `lin_api_`, `lin_oauth_` |
//! | `notion_token` | Notion integration token | `ntn_` + 11 digits + 35 |
//! | `airtable_token` | Airtable personal access token | `pat` + 14 `.` 64 hex |
//! | `figma_token` | Figma personal / OAuth token | `figd_`, `figo_`, `figu_` |
//! | `mapbox_secret_token` | Mapbox secret token (not the public `pk.`) | `sk.eyJ...` |
//! | `typeform_token` | Typeform personal token | `tfp_` + 59 |
//! | `frameio_token` | Frame.io developer token | `fio-u-` + 64 |
//! | `easypost_key` | EasyPost production / test key | `EZAK`, `EZTK` + 54 |
//! | `shippo_token` | Shippo API token | `shippo_live_`, `shippo_test_` + 40 hex |
//! | `jwt` | JSON Web Token (header and payload both JSON objects) | `eyJ...` `.` `eyJ...` `.` signature (RFC 7519) |
//! | `password_hash` | crypt(3) password hash (htpasswd, shadow, bcrypt) | `$apr1$`, `$1$`, `$5$`, `$6$`, `$2b$`, `$y$`, `$argon2id$` |
//! | `curl_credentials` | password of `curl -u user:password` | |
//! | `env_secret` | value of an upper-case environment variable named after a secret, as `.env` files and `export` write it (`SECRET_KEY=`, `JWT_SECRET=`, `DB_PASSWORD=`, `*_API_KEY=`...): any value but a reference, a variable name, a small number, a path or a URL | |
//! | `cli_secret_flag` | value of a `--token`, `--api-key`, `--password`, `-Dx.token=` flag, `mysql -pPASSWORD` | |
//! | `url_password` | password in a URL or connection string (user, host kept) | `scheme://user:<password>@host` (RFC 3986 userinfo; raw `#`, `?`, `!`, `@` accepted in the password) |
//! | `basic_auth` | HTTP Basic credentials after `Authorization:` | base64 `user:pass` (RFC 7617) |
//! | `bearer_token` | `Bearer <token>` (RFC 6750), a token of 16+ chars that looks random (letters and digits, not a date or version, entropy >= 2.5 bits/char) | |
//! | `password_assignment` | value of `*password`, `*passwd`, `*pwd`, `*passphrase`, `*_pass` keys after `=`, `:`, `:=`, `=>` (key kept): any quoted value; unquoted, a value with a digit or symbol, or any value of an upper-case environment key (`DB_PASSWORD=...`); never code (`password = password`, `*const u16`, `LM_OWF_PASSWORD`), paths or placeholders (`${PASS}`, `****`) | |
//! | `secret_assignment` | value of `*api_key`, `*secret`, `*token`, `*private_key`, `*access_key`, `*credentials` keys (key kept), 12+ chars that look random (letters and digits, not a date or version, entropy >= 2.5 bits/char), not code, a path or a URL | |
//! | `secret_in_prose` | a secret stated in words: `the admin password is X`, `root password for the NAS: X`, `auth token X`, `datadog api key is X` (a password needs a digit or symbol, a token must look random) | |
//! | `secret_field` | JSON only ([`redact_json`]): a non-empty string value whose key names a secret ([`is_secret_key`]) | |
//!
//! Patterns follow the token formats published by each vendor, as collected by the
//! gitleaks and GitHub secret-scanning rule sets. Overlaps are resolved by that order: a
//! span claimed by an earlier kind is not claimed again (`sk-ant-...` is never an OpenAI
//! key, a GitHub token after `Bearer` is a `github_token`).
//!
//! Known limits (false negatives by design, to keep prose and code intact): an unquoted
//! password of letters only after a lower-case key (`password: letmein`, like prose
//! "Password: required" or code `password = value`) or in prose ("my password is
//! letmein"), secrets of formats without a prefix outside an assignment, a flag or a
//! sentence naming them (a bare 32-hex Twilio auth token; a Twilio account SID is an
//! identifier, not a secret).
//!
//! # Personal data
//!
//! [`pii`] finds payment card numbers (Luhn), US SSNs, e-mail addresses and phone numbers
//! ([`scan_with`]); the table option `pii` ([`Policies`]) decides what they do, apart
//! from `secrets`. Secrets are found first, so a URL's password is never an e-mail.
//!
//! # Cost
//!
//! One [`RegexSet`] pass over the text tells which detectors can match; only those run
//! (with captures). Every pattern is a `regex` crate pattern: linear in the text.
//! Recall and false positives are measured on `tests/data/secrets/` (`corpus`).
//! Known false positives: example credentials in quoted literals and docs
//! (`"https://user:pass@host"`, `client_secret: "test-secret"`), and a few type names
//! after secret-named fields (`private_key: Ed25519PrivateKey`).

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Regex, RegexSet};

use crate::error::{Error, Result};

#[cfg(test)]
mod corpus;
mod pii;

/// What a `memories` table does with a row whose content, tags or metadata contain a
/// secret: the table option `secrets=redact|reject|allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecretPolicy {
    /// Replace each secret with `[REDACTED:<kind>]` before storing, indexing or embedding.
    #[default]
    Redact,
    /// Refuse the INSERT/UPDATE with an error naming the kinds found (never the secret).
    Reject,
    /// Store the text as given.
    Allow,
}

impl SecretPolicy {
    /// Parses `redact`, `reject` or `allow` (case-insensitive, surrounding blanks ignored).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the option `secrets`, the accepted values and `s`.
    pub fn parse(s: &str) -> Result<Self> {
        Self::parse_option("secrets", s)
    }

    /// [`SecretPolicy::parse`] for the option named `option` (`secrets` or `pii`).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `option`, the accepted values and `s`.
    pub fn parse_option(option: &str, s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "redact" => Ok(SecretPolicy::Redact),
            "reject" => Ok(SecretPolicy::Reject),
            "allow" => Ok(SecretPolicy::Allow),
            _ => Err(Error::invalid(format!(
                "memories option {option}: expected one of redact, reject, allow; got '{s}'"
            ))),
        }
    }

    /// The name [`SecretPolicy::parse`] reads (`redact`, `reject`, `allow`).
    pub fn name(self) -> &'static str {
        match self {
            SecretPolicy::Redact => "redact",
            SecretPolicy::Reject => "reject",
            SecretPolicy::Allow => "allow",
        }
    }
}

/// One secret found in a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    /// One of [`KINDS`].
    pub kind: &'static str,
    /// Byte offset of the first byte of the secret in the scanned text (a char boundary).
    pub start: usize,
    /// Byte offset one past the secret's last byte (a char boundary); `start < end`.
    pub end: usize,
}

/// The text that replaces a secret of `kind`: `[REDACTED:<kind>]`.
pub fn marker(kind: &str) -> String {
    format!("[REDACTED:{kind}]")
}

/// What a match of a pattern looks like to its acceptance check.
struct Hit<'a> {
    /// The matched text before the secret (a key name and separator, a URL's scheme and
    /// user); empty when the whole match is the secret.
    prefix: &'a str,
    /// The secret itself.
    secret: &'a str,
}

/// One detector: a regex whose capture groups named `s...` hold the secret (the first one
/// that participates; the whole match when there are none), and an optional check that
/// rejects matches that are not secrets.
struct Spec {
    kind: &'static str,
    pattern: &'static str,
    accept: Option<fn(&Hit<'_>) -> bool>,
}

/// Token alphabets end where a char outside them follows; `\b` fails after a trailing `-`,
/// so the patterns whose alphabet has `-` end with this (outside the secret group).
macro_rules! end_dash {
    () => {
        r"(?:[^A-Za-z0-9_\-]|$)"
    };
}

/// Separator between a key name and its value: `=`, `:`, `:=`, `=>`.
macro_rules! sep {
    () => {
        r#"["']?\s*(?::=|=>|[:=])\s*"#
    };
}

/// A value after [`sep!`]: double-quoted, single-quoted or bare (up to a blank, quote,
/// comma, semicolon, ampersand or closing bracket; not starting with `=` or `:`, so that
/// `password == x` is a comparison and `token::Kind` a path, not assignments).
macro_rules! value {
    () => {
        r#"(?:"(?P<s1>[^"\r\n]*)"|'(?P<s2>[^'\r\n]*)'|(?P<s3>[^\s"'`,;&)\]}=:][^\s"'`,;&)\]}]*))"#
    };
}

/// The detectors, most specific first (order decides overlaps). `\b` is ASCII (the
/// tokens are ASCII, and an ASCII `\b` keeps the regex on its DFA for non-ASCII text).
const SPECS: &[Spec] = &[
    Spec {
        kind: "gcp_service_account_key",
        pattern: r#""private_key"\s*:\s*"(?P<s1>-----BEGIN[ A-Z0-9]*PRIVATE KEY-----[^"]*)""#,
        accept: None,
    },
    Spec {
        kind: "private_key",
        pattern: r"-----BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----(?:[\s\S]*?-----END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?-----|[A-Za-z0-9+/=\s\\:,\-]*)",
        accept: None,
    },
    Spec {
        kind: "age_secret_key",
        pattern: r"\bAGE-SECRET-KEY-1[02-9AC-HJ-NP-Z]{58}\b",
        accept: None,
    },
    Spec {
        kind: "aws_access_key_id",
        pattern: r"\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b",
        accept: None,
    },
    Spec {
        kind: "aws_secret_access_key",
        pattern: concat!(
            r"(?i:aws[_\-. ]?secret[_\-. ]?(?:access[_\-. ]?)?key|secret[_\-. ]?access[_\-. ]?key)",
            sep!(),
            r#"["']?(?P<s1>[A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"#,
            // A key pair: the secret within 80 chars after its access key id.
            r"|\b(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b[^\n]{0,80}?(?:^|[^A-Za-z0-9/+])",
            r"(?P<s2>[A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"
        ),
        accept: Some(accept_aws_secret),
    },
    Spec {
        kind: "azure_account_key",
        pattern: r"(?i:\bAccountKey|\bSharedAccessKey)\s*=\s*(?P<s1>[A-Za-z0-9+/]{20,}={0,2})",
        accept: None,
    },
    Spec {
        kind: "gcp_api_key",
        pattern: concat!(r"\b(?P<s1>AIza[0-9A-Za-z_\-]{35})", end_dash!()),
        accept: None,
    },
    Spec {
        kind: "google_oauth_client_secret",
        pattern: concat!(r"\b(?P<s1>GOCSPX-[0-9A-Za-z_\-]{28})", end_dash!()),
        accept: None,
    },
    Spec {
        kind: "google_oauth_access_token",
        pattern: r"\bya29\.[0-9A-Za-z_\-]{20,}",
        accept: None,
    },
    Spec {
        kind: "github_token",
        pattern: r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,251}\b",
        accept: None,
    },
    Spec {
        kind: "github_fine_grained_token",
        pattern: r"\bgithub_pat_[A-Za-z0-9_]{60,251}\b",
        accept: None,
    },
    Spec {
        kind: "gitlab_token",
        pattern: r"\b(?:glpat|gldt|glrt|glptt|glft|glsoat|glcbt)-[A-Za-z0-9_\-]{20,}",
        accept: None,
    },
    Spec {
        kind: "slack_token",
        pattern: r"\bxox[abeoprs]-[0-9A-Za-z]{8,}(?:-[0-9A-Za-z]{4,})+|\bxapp-[0-9]+-[A-Z0-9]{6,}-[0-9]{6,}-[A-Za-z0-9]{16,}",
        accept: None,
    },
    Spec {
        kind: "slack_webhook",
        pattern: r"https://hooks\.slack\.com/(?:services|workflows|triggers)/(?P<s1>[A-Za-z0-9_/\-]{20,})",
        accept: None,
    },
    Spec {
        kind: "anthropic_api_key",
        pattern: r"\bsk-ant-[A-Za-z0-9_\-]{32,}",
        accept: None,
    },
    Spec {
        kind: "openai_api_key",
        pattern: r"\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{40,}|\bsk-[A-Za-z0-9]{32,}\b",
        accept: None,
    },
    Spec {
        kind: "stripe_secret_key",
        pattern: r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]{16,}\b|\bwhsec_[0-9A-Za-z]{32,}\b",
        accept: None,
    },
    Spec {
        kind: "twilio_api_key",
        pattern: r"\bSK[0-9a-fA-F]{32}\b",
        accept: None,
    },
    Spec {
        kind: "sendgrid_api_key",
        pattern: concat!(
            r"\b(?P<s1>SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43})",
            end_dash!()
        ),
        accept: None,
    },
    Spec {
        kind: "npm_token",
        pattern: r"\bnpm_[A-Za-z0-9]{36}\b",
        accept: None,
    },
    Spec {
        kind: "pypi_token",
        pattern: r"\bpypi-AgE[A-Za-z0-9_\-]{50,}",
        accept: None,
    },
    Spec {
        kind: "huggingface_token",
        pattern: r"\bhf_[A-Za-z0-9]{34,40}\b",
        accept: None,
    },
    Spec {
        kind: "discord_bot_token",
        pattern: concat!(
            r"\b(?P<s1>[MNO][A-Za-z0-9_\-]{23,27}\.[A-Za-z0-9_\-]{6}\.[A-Za-z0-9_\-]{27,40})",
            end_dash!()
        ),
        accept: None,
    },
    Spec {
        kind: "discord_webhook",
        pattern: r"https://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/(?P<s1>[A-Za-z0-9_\-]{60,70})",
        accept: None,
    },
    Spec {
        kind: "telegram_bot_token",
        pattern: concat!(r"\b(?P<s1>[0-9]{8,10}:AA[A-Za-z0-9_\-]{33})", end_dash!()),
        accept: None,
    },
    Spec {
        kind: "shopify_token",
        pattern: r"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}\b",
        accept: None,
    },
    Spec {
        kind: "digitalocean_token",
        pattern: r"\bdo[opr]_v1_[a-f0-9]{64}\b",
        accept: None,
    },
    Spec {
        kind: "azure_ad_client_secret",
        pattern: r#"(?:^|[\s'"`=:(,>\\])(?P<s1>[A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.\-]{31,34})(?:$|[\s'"`<),\\;])"#,
        accept: None,
    },
    Spec {
        kind: "azure_sas_signature",
        pattern: r"[?&;](?i:sig)=(?P<s1>[A-Za-z0-9%+/]{30,}={0,2})",
        accept: None,
    },
    Spec {
        kind: "alibaba_access_key_id",
        pattern: r"\bLTAI[A-Za-z0-9]{20}\b",
        accept: None,
    },
    Spec {
        kind: "heroku_api_key",
        pattern: concat!(r"\b(?P<s1>HRKU-AA[A-Za-z0-9_\-]{58})", end_dash!()),
        accept: None,
    },
    Spec {
        kind: "flyio_token",
        pattern: r"\b(?:fo1_[A-Za-z0-9_\-]{43}|fm[12][ar]?_[A-Za-z0-9+/]{100,}={0,3})",
        accept: None,
    },
    Spec {
        kind: "cloudflare_origin_ca_key",
        pattern: r"\bv1\.0-[a-f0-9]{24}-[a-f0-9]{146}\b",
        accept: None,
    },
    Spec {
        kind: "netlify_token",
        pattern: r"\bnf[pcou]_[A-Za-z0-9]{36,40}\b",
        accept: None,
    },
    Spec {
        kind: "supabase_token",
        pattern: r"\bsb[pa]_(?:v0_)?[a-f0-9]{40}\b|\bsb_secret_[A-Za-z0-9_\-]{30,}",
        accept: None,
    },
    Spec {
        kind: "terraform_cloud_token",
        pattern: r"\b[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=\-]{60,70}",
        accept: None,
    },
    Spec {
        kind: "vault_token",
        pattern: r"\bhv[sbr]\.[A-Za-z0-9_\-]{24,400}",
        accept: None,
    },
    Spec {
        kind: "pulumi_token",
        pattern: r"\bpul-[a-f0-9]{40}\b",
        accept: None,
    },
    Spec {
        kind: "doppler_token",
        pattern: r"\bdp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,44}\b",
        accept: None,
    },
    Spec {
        kind: "onepassword_token",
        pattern: r"\bops_eyJ[A-Za-z0-9+/]{250,}={0,3}|\bA3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}\b",
        accept: None,
    },
    Spec {
        kind: "databricks_token",
        pattern: r"\bdapi[a-f0-9]{32}(?:-[0-9])?\b",
        accept: None,
    },
    Spec {
        kind: "planetscale_token",
        pattern: r"\bpscale_(?:tkn|pw|oauth)_[A-Za-z0-9_=.\-]{32,64}",
        accept: None,
    },
    Spec {
        kind: "neon_api_key",
        pattern: r"\bnapi_[a-z0-9]{64}\b",
        accept: None,
    },
    Spec {
        kind: "tailscale_key",
        pattern: r"\btskey-(?:auth|api|client|scim|webhook)-[A-Za-z0-9]{6,}-[A-Za-z0-9]{20,}\b",
        accept: None,
    },
    Spec {
        kind: "docker_hub_token",
        pattern: r"\bdckr_(?:pat|oat)_[A-Za-z0-9_\-]{27,}",
        accept: None,
    },
    Spec {
        kind: "docker_auth",
        pattern: r#""auth"\s*:\s*"(?P<s1>[A-Za-z0-9+/]{8,}={0,2})""#,
        accept: None,
    },
    Spec {
        kind: "openshift_token",
        pattern: concat!(r"\b(?P<s1>sha256~[A-Za-z0-9_\-]{43})", end_dash!()),
        accept: None,
    },
    Spec {
        kind: "bitbucket_token",
        pattern: r"\bAT(?:BB|CT)[A-Za-z0-9_=.\-]{32,}\b",
        accept: None,
    },
    Spec {
        kind: "atlassian_api_token",
        pattern: r"\bAT(?:ATT|CTT|STT)3[A-Za-z0-9_\-=]{150,260}",
        accept: None,
    },
    Spec {
        kind: "circleci_token",
        pattern: r"\bCCIP(?:AT|RJ)_[A-Za-z0-9]{22}_[a-f0-9]{40}\b",
        accept: None,
    },
    Spec {
        kind: "buildkite_token",
        pattern: r"\bbk(?:ua|ct)_[a-f0-9]{40}\b",
        accept: None,
    },
    Spec {
        kind: "rubygems_token",
        pattern: r"\brubygems_[a-f0-9]{48}\b",
        accept: None,
    },
    Spec {
        kind: "nuget_api_key",
        pattern: r"\boy2[a-z0-9]{43}\b",
        accept: None,
    },
    Spec {
        kind: "clojars_token",
        pattern: r"\bCLOJARS_[A-Za-z0-9]{60}\b",
        accept: None,
    },
    Spec {
        kind: "artifactory_token",
        pattern: r"\bAKCp[A-Za-z0-9]{69}\b|\bcmVmd[A-Za-z0-9]{59}\b",
        accept: None,
    },
    Spec {
        kind: "sourcegraph_token",
        pattern: r"\bsgp_(?:[a-f0-9]{16}_|local_)?[a-f0-9]{40}\b",
        accept: None,
    },
    Spec {
        kind: "sonarqube_token",
        pattern: r"\bsq[uap]_[a-f0-9]{40}\b",
        accept: None,
    },
    Spec {
        kind: "postman_api_key",
        pattern: r"\bPMAK-[a-f0-9]{24}-[a-f0-9]{34}\b",
        accept: None,
    },
    Spec {
        kind: "readme_api_key",
        pattern: r"\brdme_[a-z0-9]{70}\b",
        accept: None,
    },
    Spec {
        kind: "infracost_api_key",
        pattern: r"\bico-[A-Za-z0-9]{32}\b",
        accept: None,
    },
    Spec {
        kind: "mailgun_key",
        pattern: r"\bkey-[a-f0-9]{32}\b|\b[a-f0-9]{32}-[a-f0-9]{8}-[a-f0-9]{8}\b",
        accept: None,
    },
    Spec {
        kind: "mailchimp_api_key",
        pattern: r"\b[a-f0-9]{32}-us[0-9]{1,2}\b",
        accept: None,
    },
    Spec {
        kind: "brevo_api_key",
        pattern: r"\bx(?:keysib|smtpsib)-[a-f0-9]{64}-[A-Za-z0-9]{16}\b",
        accept: None,
    },
    Spec {
        kind: "square_token",
        pattern: concat!(
            r"\b(?P<s1>(?:EAAA|sq0atp-)[A-Za-z0-9_\-]{22,}|sq0csp-[A-Za-z0-9_\-]{43})",
            end_dash!()
        ),
        accept: None,
    },
    Spec {
        kind: "braintree_token",
        pattern: r"\baccess_token\$(?:production|sandbox)\$[a-z0-9]{16}\$[a-f0-9]{32}\b",
        accept: None,
    },
    Spec {
        kind: "hubspot_token",
        pattern: r"\bpat-(?:na|eu|ap)[0-9]-[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}\b",
        accept: None,
    },
    Spec {
        kind: "groq_api_key",
        pattern: r"\bgsk_[A-Za-z0-9]{52}\b",
        accept: None,
    },
    Spec {
        kind: "replicate_token",
        pattern: r"\br8_[A-Za-z0-9]{37}\b",
        accept: None,
    },
    Spec {
        kind: "perplexity_api_key",
        pattern: r"\bpplx-[A-Za-z0-9]{48}\b",
        accept: None,
    },
    Spec {
        kind: "xai_api_key",
        pattern: r"\bxai-[A-Za-z0-9]{80}\b",
        accept: None,
    },
    Spec {
        kind: "langsmith_api_key",
        pattern: r"\blsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10}\b",
        accept: None,
    },
    Spec {
        kind: "pinecone_api_key",
        pattern: r"\bpcsk_[A-Za-z0-9]{4,8}_[A-Za-z0-9]{50,70}\b",
        accept: None,
    },
    Spec {
        kind: "sentry_token",
        pattern: r"\bsntry[us]_[A-Za-z0-9+/=_]{40,}",
        accept: None,
    },
    Spec {
        kind: "sentry_dsn",
        pattern: r"https?://(?P<s1>[a-f0-9]{32})(?::[a-f0-9]{32})?@[A-Za-z0-9.\-]*sentry",
        accept: None,
    },
    Spec {
        kind: "grafana_token",
        pattern: r"\bglc_[A-Za-z0-9+/]{32,400}={0,3}|\bglsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}\b|\beyJrIjoi[A-Za-z0-9]{70,400}={0,3}",
        accept: None,
    },
    Spec {
        kind: "new_relic_key",
        pattern: r"\bNR(?:AK|II|JS|RA|IQ)-[A-Za-z0-9]{20,42}\b|\b[a-f0-9]{36}NRAL\b",
        accept: None,
    },
    Spec {
        kind: "dynatrace_token",
        pattern: r"\bdt0c01\.[A-Za-z0-9]{24}\.[A-Za-z0-9]{64}\b",
        accept: None,
    },
    Spec {
        kind: "linear_api_key",
        pattern: r"\blin_(?:api|oauth)_[A-Za-z0-9]{40,64}\b",
        accept: None,
    },
    Spec {
        kind: "notion_token",
        pattern: r"\bntn_[0-9]{11}[A-Za-z0-9]{35}\b",
        accept: None,
    },
    Spec {
        kind: "airtable_token",
        pattern: r"\bpat[A-Za-z0-9]{14}\.[a-f0-9]{64}\b",
        accept: None,
    },
    Spec {
        kind: "figma_token",
        pattern: concat!(r"\b(?P<s1>fig[dou]_[A-Za-z0-9_\-]{40,})", end_dash!()),
        accept: None,
    },
    Spec {
        kind: "mapbox_secret_token",
        pattern: r"\bsk\.eyJ[A-Za-z0-9_\-]{20,}\.[A-Za-z0-9_\-]{20,}",
        accept: None,
    },
    Spec {
        kind: "typeform_token",
        pattern: r"\btfp_[A-Za-z0-9_\-=.]{59}",
        accept: None,
    },
    Spec {
        kind: "frameio_token",
        pattern: r"\bfio-u-[A-Za-z0-9_\-=]{64}",
        accept: None,
    },
    Spec {
        kind: "easypost_key",
        pattern: r"\bEZ[AT]K[A-Za-z0-9]{54}\b",
        accept: None,
    },
    Spec {
        kind: "shippo_token",
        pattern: r"\bshippo_(?:live|test)_[a-f0-9]{40}\b",
        accept: None,
    },
    Spec {
        kind: "jwt",
        pattern: r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*",
        accept: None,
    },
    Spec {
        kind: "password_hash",
        pattern: r"\$(?:apr1|1|5|6|2[abxy]?|y|argon2i?d?)\$[A-Za-z0-9./$=,+]{20,}",
        accept: None,
    },
    Spec {
        kind: "curl_credentials",
        pattern: r#"\bcurl\b[^\n]*?\s(?:-u|--user)[ =]?["']?[^\s:"']{1,64}:(?P<s1>[^\s"']{3,})"#,
        accept: Some(accept_url_password),
    },
    Spec {
        kind: "env_secret",
        pattern: concat!(
            r#"(?:^|[\s;"'`])(?:export\s+)?(?:[A-Z0-9]+_)*(?:SECRET|TOKEN|PASSWORD|PASSWD|PASS|PWD|PASSPHRASE|CREDENTIALS?|DSN|"#,
            r"(?:SECRET|API|ACCESS|PRIVATE|MASTER|SIGNING|AUTH|LICENSE|APP|ENCRYPTION|ENC|CLIENT|ADMIN|SERVICE|ACCOUNT|WEBHOOK)_?KEY)",
            r#"[ \t]*=[ \t]*(?:"(?P<s1>[^"\r\n]*)"|'(?P<s2>[^'\r\n]*)'|(?P<s3>[^\s"'`]*[^\s"'`;,]))"#
        ),
        accept: Some(accept_env_secret),
    },
    Spec {
        kind: "cli_secret_flag",
        pattern: concat!(
            r"(?:^|\s)--?(?:[A-Za-z0-9]+[\-.])*(?i:token|api-?key|auth-?key|access-key|secret-?key|secret|password|passwd)",
            r#"(?:=|[ \t]+)["']?(?P<s1>[^\s"'`]{8,})"#,
            // `mysql -pPASSWORD` (the password glued to `-p`).
            r#"|\bmysql(?:dump|admin|sh)?\b[^\n]*?\s-p["']?(?P<s2>[^\s"'`]{4,})"#
        ),
        accept: Some(accept_cli_secret),
    },
    Spec {
        kind: "url_password",
        pattern: r#"\b[A-Za-z][A-Za-z0-9+.\-]{1,30}://[^\s:/?#"'<>\[\]]*:(?P<s1>[^\s/"'<>]+)@[A-Za-z0-9_.\-\[\]]+"#,
        accept: Some(accept_url_password),
    },
    Spec {
        kind: "basic_auth",
        pattern: r#"(?i:\bauthorization)["']?\s*[:=]\s*["']?(?i:basic)\s+(?P<s1>[A-Za-z0-9+/]{8,}={0,2})"#,
        accept: None,
    },
    Spec {
        kind: "bearer_token",
        pattern: r"(?i:\bbearer)\s+(?P<s1>[A-Za-z0-9\-._~+/]{16,}=*)",
        accept: Some(accept_bearer),
    },
    Spec {
        kind: "password_assignment",
        pattern: concat!(
            r"\b[A-Za-z0-9_.\-]*(?i:password|passwd|passphrase|pwd|[_.\-]pass)",
            sep!(),
            value!()
        ),
        accept: Some(accept_password),
    },
    Spec {
        kind: "secret_assignment",
        pattern: concat!(
            r"\b[A-Za-z0-9_.\-]*(?i:(?:api|secret|private|access|master|signing|license|auth|encryption|client|app)[_.\-]?key|secret|token|credentials?)",
            sep!(),
            value!()
        ),
        accept: Some(accept_secret_value),
    },
    Spec {
        kind: "secret_in_prose",
        pattern: concat!(
            r"(?i:\b(?:password|passwd|passphrase|passcode|token|secret|",
            r"(?:api|access|secret|private|auth|license|signing|master|account|app|admin|deploy|service|client|personal|production|live)[ _\-](?:key|token|secret)))\b",
            r"(?:\s+(?:for|of|to|on)(?:\s+[A-Za-z0-9_.\-]+){1,3}?)?",
            r#"(?:\s*[:=]|\s+(?:is|was)(?:\s+now)?:?)?\s+["'`]?(?P<s1>[^\s"'`]{5,}[^\s"'`.,;:)])"#
        ),
        accept: Some(accept_prose_secret),
    },
];

/// The kind [`redact_json`] reports for a string value redacted because of its key.
pub const SECRET_FIELD: &str = "secret_field";

#[cfg(test)]
const N_SPECS: usize = SPECS.len();

#[cfg(test)]
const KIND_ARRAY: [&str; N_SPECS + 1] = {
    let mut a = [SECRET_FIELD; N_SPECS + 1];
    let mut i = 0;
    while i < N_SPECS {
        a[i] = SPECS[i].kind;
        i += 1;
    }
    a
};

/// Every kind a [`Finding`] can have: the text detectors in priority order, then
/// [`SECRET_FIELD`] (JSON only).
#[cfg(test)]
pub const KINDS: &[&str] = &KIND_ARRAY;

/// A compiled detector.
struct Detector {
    kind: &'static str,
    re: Regex,
    /// Indices of the capture groups named `s...`.
    secret_groups: Vec<usize>,
    accept: Option<fn(&Hit<'_>) -> bool>,
}

fn compile(spec: &Spec) -> std::result::Result<Detector, regex::Error> {
    let re = Regex::new(&spec.pattern.replace(r"\b", r"(?-u:\b)"))?;
    let secret_groups = re
        .capture_names()
        .enumerate()
        .filter(|(_, name)| name.is_some_and(|n| n.starts_with('s')))
        .map(|(i, _)| i)
        .collect();
    Ok(Detector {
        kind: spec.kind,
        re,
        secret_groups,
        accept: spec.accept,
    })
}

/// The detectors, compiled once per process. A pattern that does not compile (a bug
/// caught by `tests::every_pattern_compiles`) is skipped rather than panicking.
static DETECTORS: LazyLock<Vec<Detector>> =
    LazyLock::new(|| SPECS.iter().filter_map(|s| compile(s).ok()).collect());

/// All detectors' patterns in one [`RegexSet`] (index `i` is `DETECTORS[i]`): one pass
/// over the text tells which detectors match at all, so the others are not run. `None`
/// (never expected: the patterns compiled one by one) runs every detector.
static PREFILTER: LazyLock<Option<RegexSet>> = LazyLock::new(|| {
    RegexSet::new(DETECTORS.iter().map(|d| d.re.as_str()))
        .ok()
        .filter(|set| set.len() == DETECTORS.len())
});

/// `[REDACTED:<kind>]` markers already in a text: never detected again.
static MARKER: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"\[REDACTED:[a-z0-9_]+\]").ok());

/// Longest rejected value (bytes) searched again for a match starting inside it.
const MAX_RESCAN: usize = 256;

/// Finds the secrets in `text` (not the personal data: [`scan_with`]): non-overlapping,
/// ordered by `start`.
pub fn scan(text: &str) -> Vec<Finding> {
    scan_with(text, false)
}

/// Whether a finding's kind is personal data ([`pii::KINDS`]: the `pii` option) rather
/// than a secret (the `secrets` option).
pub fn is_pii(kind: &str) -> bool {
    pii::KINDS.contains(&kind)
}

/// Finds the secrets in `text`, and with `with_pii` the personal data ([`pii`]):
/// non-overlapping, ordered by `start`.
///
/// One [`RegexSet`] pass tells which detectors match; each of those then runs once over
/// the text. A span claimed by an earlier kind in [`KINDS`] is not claimed by a later one
/// (secrets before PII, so a URL's password is not an e-mail address), and spans inside
/// existing `[REDACTED:...]` markers are ignored.
pub fn scan_with(text: &str, with_pii: bool) -> Vec<Finding> {
    let mut markers = Spans::default();
    if let Some(re) = MARKER.as_ref() {
        for m in re.find_iter(text) {
            markers.insert(m.start(), m.end());
        }
    }
    let mut claimed = markers.clone();
    let mut found: Vec<Finding> = Vec::new();
    let candidates = PREFILTER.as_ref().map(|set| set.matches(text));
    for (i, d) in DETECTORS.iter().enumerate() {
        if candidates.as_ref().is_some_and(|c| !c.matched(i)) {
            continue;
        }
        let mut pos = 0;
        while pos <= text.len() {
            let Some(caps) = d.re.captures_at(text, pos) else {
                break;
            };
            let Some(whole) = caps.get(0) else { break };
            let m = d
                .secret_groups
                .iter()
                .find_map(|&i| caps.get(i))
                .unwrap_or(whole);
            // A rejected match must not hide a match starting in its value
            // (`credentials: aws_secret_access_key = ...`): resume at the value when it
            // follows a key and is short; otherwise after the match (rescanning long values
            // would be quadratic: `token=token=token=...`). After an accepted match,
            // resume after the secret.
            pos = if m.start() > whole.start() && m.len() <= MAX_RESCAN {
                m.start()
            } else {
                whole.end().max(next_char(text, whole.start()))
            };
            let raw = m.as_str();
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                continue;
            }
            let start = m.start() + (raw.len() - raw.trim_start().len());
            let end = start + trimmed.len();
            if let Some(accept) = d.accept {
                let hit = Hit {
                    prefix: &text[whole.start()..start],
                    secret: trimmed,
                };
                if !accept(&hit) {
                    continue;
                }
            }
            if markers.overlaps(start, end) || claimed.overlaps(start, end) {
                continue;
            }
            pos = pos.max(end);
            claimed.insert(start, end);
            found.push(Finding {
                kind: d.kind,
                start,
                end,
            });
        }
    }
    if with_pii {
        pii::scan(text, &mut claimed, &mut found);
    }
    found.sort_by_key(|f| f.start);
    found
}

/// Disjoint byte ranges `[start, end)`, by start: an overlap test in O(log n), so that a
/// text with many secrets is not scanned in quadratic time.
#[derive(Default, Clone)]
struct Spans(std::collections::BTreeMap<usize, usize>);

impl Spans {
    /// Whether `[start, end)` overlaps a stored range. The ranges being disjoint, their
    /// ends grow with their starts: only the last range starting before `end` can overlap.
    fn overlaps(&self, start: usize, end: usize) -> bool {
        self.0
            .range(..end)
            .next_back()
            .is_some_and(|(_, &e)| e > start)
    }

    /// Adds `[start, end)`, which must not overlap a stored range.
    fn insert(&mut self, start: usize, end: usize) {
        self.0.insert(start, end);
    }
}

/// The byte offset of the char after the one at `i` (`text.len() + 1` at the end, which
/// stops the search loop).
fn next_char(text: &str, i: usize) -> usize {
    text[i..]
        .chars()
        .next()
        .map_or(text.len() + 1, |c| i + c.len_utf8())
}

/// Replaces `findings` (from [`scan`] of `text`: ordered, non-overlapping, in bounds) by
/// their markers.
fn apply(text: &str, findings: &[Finding]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for f in findings {
        if f.start < last || f.end > text.len() {
            continue;
        }
        out.push_str(&text[last..f.start]);
        out.push_str(&marker(f.kind));
        last = f.end;
    }
    out.push_str(&text[last..]);
    out
}

/// Redacts `text`: each secret found by [`scan`] is replaced by `[REDACTED:<kind>]`.
///
/// Returns the redacted text and the findings, whose offsets refer to the input `text`.
/// The text is returned unchanged (copied) when nothing is found.
#[cfg(test)]
pub fn redact(text: &str) -> (String, Vec<Finding>) {
    let findings = scan(text);
    let out = apply(text, &findings);
    (out, findings)
}

/// Key names (lowercased, only ASCII letters and digits kept) whose string values are
/// secrets whatever they look like, matched as suffixes: `db_password`, `apiKey`,
/// `client-secret`, `AWS_SECRET_ACCESS_KEY`, `x-auth-token`...
pub const SECRET_KEY_SUFFIXES: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "secret",
    "apikey",
    "token",
    "privatekey",
    "accesskey",
    "secretkey",
    "signingkey",
    "encryptionkey",
    "credential",
    "credentials",
    "authorization",
];

/// Whether a JSON object key names a secret (see [`SECRET_KEY_SUFFIXES`]): `password`,
/// `api_key`, `clientSecret`, `X-Auth-Token`, `private_key`... but not `token_count` or
/// `secret_santa`.
pub fn is_secret_key(key: &str) -> bool {
    let k: String = key
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    // `auth`: the base64 `user:password` of a Docker `config.json` (`"auths"`).
    k == "auth" || SECRET_KEY_SUFFIXES.iter().any(|s| k.ends_with(s))
}

/// Redacts every string of a JSON document (metadata object, tags array), recursively:
/// object keys and string values go through [`redact`]; a non-empty string value under a
/// key that names a secret ([`is_secret_key`]) is replaced whole, by the marker of the
/// kind [`scan`] finds when one secret covers the whole value, else by
/// `[REDACTED:secret_field]`. Secrets only: [`redact_json_with`] applies a table's
/// [`Policies`] (personal data too).
///
/// Returns compact JSON (serde_json's serialization, as `row::metadata` stores it) and
/// the findings. A finding's offsets refer to the decoded string (key or value) it was
/// found in, not to the JSON text; a `secret_field` finding spans the whole value.
///
/// # Errors
/// [`Error::Invalid`] when `json` is not valid JSON.
#[cfg(test)]
pub fn redact_json(json: &str) -> Result<(String, Vec<Finding>)> {
    redact_json_with(json, Policies::from(SecretPolicy::Redact))
}

/// [`redact_json`] under `policies`: the findings of kinds whose policy is
/// [`SecretPolicy::Allow`] are neither reported nor replaced (a secret-named key's value
/// is kept when `secrets` is `allow`); the others are replaced by their markers.
///
/// # Errors
/// [`Error::Invalid`] when `json` is not valid JSON.
pub fn redact_json_with(json: &str, policies: Policies) -> Result<(String, Vec<Finding>)> {
    let mut value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| Error::invalid(format!("secret redaction: invalid JSON ({e})")))?;
    let mut findings = Vec::new();
    redact_value(&mut value, &mut findings, policies);
    let out = serde_json::to_string(&value)
        .map_err(|e| Error::invalid(format!("secret redaction: cannot serialize JSON ({e})")))?;
    Ok((out, findings))
}

/// The policies of a table: `secrets` for the secret kinds, `pii` for the personal data
/// kinds ([`is_pii`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policies {
    /// The `secrets` option.
    pub secrets: SecretPolicy,
    /// The `pii` option.
    pub pii: SecretPolicy,
}

impl From<SecretPolicy> for Policies {
    /// `secrets` = `p`, personal data allowed (not scanned).
    fn from(p: SecretPolicy) -> Self {
        Policies {
            secrets: p,
            pii: SecretPolicy::Allow,
        }
    }
}

impl Policies {
    /// The policy that applies to a finding of `kind`.
    pub fn of(self, kind: &str) -> SecretPolicy {
        if is_pii(kind) { self.pii } else { self.secrets }
    }

    /// The findings of `text` that these policies act on: [`scan_with`] (with personal
    /// data unless `pii` is `allow`), without the kinds whose policy is `allow`. Nothing
    /// is scanned when both are `allow`.
    pub fn findings(self, text: &str) -> Vec<Finding> {
        if self.secrets == SecretPolicy::Allow && self.pii == SecretPolicy::Allow {
            return Vec::new();
        }
        let mut f = scan_with(text, self.pii != SecretPolicy::Allow);
        f.retain(|f| self.of(f.kind) != SecretPolicy::Allow);
        f
    }
}

fn redact_value(v: &mut serde_json::Value, findings: &mut Vec<Finding>, p: Policies) {
    use serde_json::Value;
    match v {
        Value::String(s) => {
            let f = p.findings(s);
            if !f.is_empty() {
                *s = apply(s, &f);
                findings.extend(f);
            }
        }
        Value::Array(items) => {
            for item in items {
                redact_value(item, findings, p);
            }
        }
        Value::Object(map) => {
            let old = std::mem::take(map);
            for (key, mut val) in old {
                let f = p.findings(&key);
                let mut new_key = if f.is_empty() {
                    key.clone()
                } else {
                    apply(&key, &f)
                };
                findings.extend(f);
                match &mut val {
                    Value::String(s)
                        if p.secrets != SecretPolicy::Allow
                            && is_secret_key(&key)
                            && !s.trim().is_empty() =>
                    {
                        if let Some(f) = redact_whole(s) {
                            findings.push(f);
                        }
                    }
                    _ => redact_value(&mut val, findings, p),
                }
                // Two keys redacted to the same text must not overwrite each other.
                let mut n = 2;
                let base = new_key.clone();
                while map.contains_key(&new_key) {
                    new_key = format!("{base}#{n}");
                    n += 1;
                }
                map.insert(new_key, val);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Replaces the whole of `s` (the value of a secret-named key) by one marker, unless it
/// is already exactly a marker. Returns the finding (offsets within the old `s`).
fn redact_whole(s: &mut String) -> Option<Finding> {
    if MARKER
        .as_ref()
        .and_then(|re| re.find(s))
        .is_some_and(|m| m.start() == 0 && m.end() == s.len())
    {
        return None;
    }
    let f = scan(s);
    let kind = match f.as_slice() {
        [one] if s[..one.start].trim().is_empty() && s[one.end..].trim().is_empty() => one.kind,
        _ => SECRET_FIELD,
    };
    let finding = Finding {
        kind,
        start: 0,
        end: s.len(),
    };
    *s = marker(kind);
    Some(finding)
}

/// Applies `policies` (a table's `secrets` and `pii` options, or one [`SecretPolicy`] for
/// secrets alone) to the value of a text column (`content`, `source`): returns the text to
/// store, index and embed.
///
/// Kinds under [`SecretPolicy::Redact`] are replaced by their markers (the text is
/// borrowed unchanged when there is none); kinds under [`SecretPolicy::Allow`] are kept
/// (and not scanned for when both policies allow).
///
/// # Errors
/// A kind under [`SecretPolicy::Reject`] found in `text`: [`Error::Invalid`] naming
/// `column`, the option (`secrets=reject` or `pii=reject`) and the kinds found
/// ([`summary`]), never the value.
pub fn enforce_text<'a>(
    policies: impl Into<Policies>,
    column: &str,
    text: &'a str,
) -> Result<Cow<'a, str>> {
    let policies = policies.into();
    let findings = policies.findings(text);
    if findings.is_empty() {
        return Ok(Cow::Borrowed(text));
    }
    if let Some(e) = rejection(column, &findings, policies) {
        return Err(e);
    }
    Ok(Cow::Owned(apply(text, &findings)))
}

/// [`enforce_text`] for a JSON column (`tags`, `metadata`), through [`redact_json_with`]:
/// returns `json` itself when nothing is found (or when both policies allow), else the
/// redacted compact JSON.
///
/// # Errors
/// A kind under [`SecretPolicy::Reject`]: [`Error::Invalid`] naming `column`, the option
/// and the kinds. Invalid JSON: [`Error::Invalid`] (callers validate the column first).
pub fn enforce_json<'a>(
    policies: impl Into<Policies>,
    column: &str,
    json: &'a str,
) -> Result<Cow<'a, str>> {
    let policies = policies.into();
    if policies.secrets == SecretPolicy::Allow && policies.pii == SecretPolicy::Allow {
        return Ok(Cow::Borrowed(json));
    }
    let (out, findings) = redact_json_with(json, policies)?;
    if findings.is_empty() {
        return Ok(Cow::Borrowed(json));
    }
    if let Some(e) = rejection(column, &findings, policies) {
        return Err(e);
    }
    Ok(Cow::Owned(out))
}

/// The error for the findings whose policy is [`SecretPolicy::Reject`] (secrets first),
/// or `None` when there are none.
fn rejection(column: &str, findings: &[Finding], policies: Policies) -> Option<Error> {
    let rejected = |pii: bool| -> Vec<Finding> {
        findings
            .iter()
            .filter(|f| is_pii(f.kind) == pii && policies.of(f.kind) == SecretPolicy::Reject)
            .copied()
            .collect()
    };
    let secrets = rejected(false);
    if !secrets.is_empty() {
        return Some(Error::invalid(format!(
            "column {column}: contains secrets ({}); the table option secrets=reject refuses them \
             (use secrets=redact to store them as [REDACTED:<kind>], or remove them)",
            summary(&secrets)
        )));
    }
    let pii = rejected(true);
    if !pii.is_empty() {
        return Some(Error::invalid(format!(
            "column {column}: contains personal data ({}); the table option pii=reject refuses it \
             (use pii=redact to store it as [REDACTED:<kind>], pii=allow to store it as given, \
             or remove it)",
            summary(&pii)
        )));
    }
    None
}

/// A short description of findings for error messages, never containing the secrets:
/// the kinds in order of first appearance, with counts, e.g. `github_token, url_password x2`.
pub fn summary(findings: &[Finding]) -> String {
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for f in findings {
        match kinds.iter_mut().find(|(k, _)| *k == f.kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((f.kind, 1)),
        }
    }
    kinds
        .iter()
        .map(|(k, n)| {
            if *n == 1 {
                k.to_string()
            } else {
                format!("{k} x{n}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Values that stand for a secret without being one: template and environment
/// references (`${DB_PASSWORD}`, `$PASS`, `<password>`, `{{ secret }}`, `%(pwd)s`),
/// masks (`****`, `xxxx`), null-like words, expression keywords and existing markers.
fn is_placeholder(v: &str) -> bool {
    let v = v.trim();
    if v.is_empty() || v.starts_with(['$', '<', '{', '%']) || v.starts_with("[REDACTED:") {
        return true;
    }
    if v.chars()
        .all(|c| matches!(c, '*' | '.' | 'x' | 'X' | '•' | '-'))
    {
        return true;
    }
    matches!(
        v.to_ascii_lowercase().as_str(),
        "null" | "none" | "nil" | "undefined" | "true" | "false" | "empty" | "redacted"
            // Keywords that start an expression in code (`let pwd = unsafe { .. }`).
            | "unsafe" | "await" | "new" | "self" | "this" | "async" | "lambda" | "function"
    )
}

/// Whether the value was written in quotes (the char before it is a quote).
fn quoted(hit: &Hit<'_>) -> bool {
    hit.prefix.ends_with(['"', '\''])
}

/// Code rather than a value, in an unquoted assignment: a call (`getpass()`), an index
/// (`env["X"]`), a generic or path type (`Option<String>`, `crate::passwd`), a pointer
/// type (`*const u16`), a dotted path (`config.db.password`), a constant or type in
/// SCREAMING_SNAKE_CASE (`LM_OWF_PASSWORD`), a numeric literal (`0x030`, `3i32`, `1010`;
/// a run of 6+ digits may be a PIN and is kept as a secret).
fn is_code_expression(v: &str) -> bool {
    if v.contains(['(', ')', '[', ']', '<', '>', '{', '}']) || v.contains("::") {
        return true;
    }
    if v.starts_with(['*', '&']) {
        return true;
    }
    is_dotted_path(v) || is_screaming_snake(v) || is_number_literal(v)
}

/// `a.b`, `self.secret_key`, `os.environ`: identifiers joined by dots.
fn is_dotted_path(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            let mut cs = p.chars();
            cs.next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// `DOT11_DIALOG_TOKEN`, `IKEEXT_CREDENTIAL0`: uppercase letters, digits and at least
/// one underscore, starting with a letter.
fn is_screaming_snake(v: &str) -> bool {
    v.starts_with(|c: char| c.is_ascii_uppercase())
        && v.contains('_')
        && v.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// `0x030`, `3i32`, `9u32`, `2.5f64`, or fewer than 6 decimal digits (enum values, counts).
fn is_number_literal(v: &str) -> bool {
    if let Some(hex) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        return !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit() || c == '_');
    }
    let digits = v.trim_end_matches(|c: char| !c.is_ascii_digit());
    let suffix = &v[digits.len()..];
    let typed = [
        "i8", "i16", "i32", "i64", "i128", "isize", "u8", "u16", "u32", "u64", "u128", "usize",
        "f32", "f64",
    ]
    .contains(&suffix);
    !digits.is_empty()
        && digits
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '_')
        && (typed || (suffix.is_empty() && digits.len() < 6))
}

fn has_digit_or_symbol(v: &str) -> bool {
    v.chars()
        .any(|c| c.is_ascii_digit() || "!@#$%^&*+=?~".contains(c))
}

/// A password value. Quoted values are accepted as they are (`password = "hunter2"`).
/// Unquoted ones are often code (`password = password`, `username, password = auth`)
/// or prose (`Password: required`), so they must look like a password: no path, no code
/// expression, not a variable named after a password, and a digit or a symbol, unless
/// the key is an environment variable in upper case (`DB_PASSWORD=letmein`).
fn accept_password(hit: &Hit<'_>) -> bool {
    let v = hit.secret;
    if is_placeholder(v) {
        return false;
    }
    if quoted(hit) {
        return true;
    }
    if v.starts_with(['/', '~']) || is_code_expression(v) || is_password_variable(v) {
        return false;
    }
    let key = hit
        .prefix
        .split(|c: char| c.is_whitespace() || "\"':=>".contains(c))
        .find(|k| !k.is_empty())
        .unwrap_or("");
    let env_key = key.contains(|c: char| c.is_ascii_uppercase())
        && !key.contains(|c: char| c.is_ascii_lowercase());
    let colon = !hit.prefix.contains('=');
    if env_key && !colon {
        return true;
    }
    v.chars().count() >= 4 && has_digit_or_symbol(v)
}

/// An identifier naming a password rather than being one: `key_password`,
/// `url_user_password`, `user_pass`, `pwd`.
fn is_password_variable(v: &str) -> bool {
    let l = v.to_ascii_lowercase();
    l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && (l.contains("password")
            || l.contains("passwd")
            || l.contains("pwd")
            || l.contains("_pass")
            || l.contains("pass_"))
}

/// A file path rather than a key: `~/.ssh/id_ed25519`, `./certs/key.pem`,
/// `/etc/ssl/private/server.key` (a leading `/` alone is not enough: base64 keys may
/// start with one, but never contain a `.`).
fn is_path(v: &str) -> bool {
    v.starts_with("~/")
        || v.starts_with("./")
        || v.starts_with("../")
        || (v.starts_with('/') && v.contains('.'))
}

/// Shannon entropy of `v`'s chars, in bits per char: -sum p(c) log2 p(c).
fn entropy(v: &str) -> f64 {
    let mut counts: Vec<(char, usize)> = Vec::new();
    let mut n = 0usize;
    for c in v.chars() {
        n += 1;
        match counts.iter_mut().find(|(k, _)| *k == c) {
            Some((_, k)) => *k += 1,
            None => counts.push((c, 1)),
        }
    }
    counts
        .iter()
        .map(|&(_, k)| {
            let p = k as f64 / n as f64;
            -p * p.log2()
        })
        .sum()
}

/// Minimum entropy (bits/char) of a token with no vendor prefix; it only rejects
/// repetitive values (`aaaaaaaaaaa1`, `abcabcabcab1`). Per-char entropy is bounded by
/// log2(length), so short random tokens score low; measured over 100,000 uniform random
/// strings each: 16-char alphanumeric min 2.77, 32-char hex min 2.81, 12-char
/// alphanumeric 0.1st percentile 2.75, 12-char hex 1st percentile 2.36.
const MIN_ENTROPY: f64 = 2.5;

/// A token with no vendor prefix: 12+ chars, letters and digits, not a date, time or
/// version number, not repetitive ([`MIN_ENTROPY`]).
fn looks_random(v: &str) -> bool {
    v.chars().count() >= 12
        && v.chars().any(|c| c.is_ascii_digit())
        && v.chars().any(|c| c.is_ascii_alphabetic())
        && !is_date_or_version(v)
        && entropy(v) >= MIN_ENTROPY
}

/// Dates, times and version strings: `2024-05-07T12:00:00Z`, `v2.1.0-beta.3`,
/// `1.2.3-rc.1+build.5`: runs of digits, separators (`-:./+_`) and only the letter runs
/// of [`DATE_VERSION_WORDS`].
fn is_date_or_version(v: &str) -> bool {
    let lower = v.to_ascii_lowercase();
    let mut rest = lower.as_str();
    while let Some(c) = rest.chars().next() {
        if c.is_ascii_alphabetic() {
            let end = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            if !DATE_VERSION_WORDS.contains(&&rest[..end]) {
                return false;
            }
            rest = &rest[end..];
        } else if c.is_ascii_digit() || "-:./+_".contains(c) {
            rest = &rest[1..];
        } else {
            return false;
        }
    }
    true
}

/// Letter runs allowed in [`is_date_or_version`]: ISO 8601 designators and the usual
/// pre-release / build tags (SemVer, PEP 440).
const DATE_VERSION_WORDS: &[&str] = &[
    "t", "z", "utc", "gmt", "am", "pm", "v", "alpha", "beta", "rc", "dev", "pre", "post", "build",
    "final", "release", "snapshot",
];

fn accept_secret_value(hit: &Hit<'_>) -> bool {
    let v = hit.secret;
    !is_placeholder(v)
        && !is_code_expression(v)
        && !is_path(v)
        && !v.contains("://")
        && !v.contains(char::is_whitespace)
        && looks_random(v)
}

/// The 40-char secret of an AWS key pair: base64 of random bytes, so mixed case or a
/// `/`/`+`, and a digit (not a 40-char word or hex hash).
fn accept_aws_secret(hit: &Hit<'_>) -> bool {
    let v = hit.secret;
    let lower = v.chars().any(|c| c.is_ascii_lowercase());
    let upper = v.chars().any(|c| c.is_ascii_uppercase());
    (v.contains(['/', '+']) || (lower && upper)) && v.chars().any(|c| c.is_ascii_digit())
}

/// The value of an upper-case environment variable named after a secret (`SECRET_KEY=`,
/// `JWT_SECRET=`, `DB_PASSWORD=`), as `.env` files and `export` write them: anything but a
/// reference (`$X`, `${X}`), another variable's name, a small number, a path, a URL (whose
/// password `url_password` finds) or a dotted code path.
fn accept_env_secret(hit: &Hit<'_>) -> bool {
    let v = hit.secret;
    !is_placeholder(v)
        && v.chars().count() >= 4
        && !is_screaming_snake(v)
        && !is_number_literal(v)
        && !is_dotted_path(v)
        && !v.starts_with(['/', '~', '*', '&'])
        && !v.starts_with("./")
        && !v.contains("://")
        && !v.contains("::")
}

/// The value of a command-line flag named after a secret (`--token X`, `--password=X`,
/// `-Dsonar.token=X`): a password flag takes any value with a digit or symbol (or 8+
/// chars), other flags a random-looking token.
fn accept_cli_secret(hit: &Hit<'_>) -> bool {
    let v = hit.secret;
    if is_placeholder(v) || is_path(v) || v.contains("://") || is_code_expression(v) {
        return false;
    }
    let flag = hit.prefix.to_ascii_lowercase();
    if flag.contains("pass")
        || flag.ends_with("-p")
        || flag.ends_with("-p'")
        || flag.ends_with("-p\"")
    {
        return !is_password_variable(v) && (has_digit_or_symbol(v) || v.chars().count() >= 8);
    }
    looks_random(v)
}

/// A secret stated in prose: `the wifi password is X`, `root password for the NAS: X`,
/// `Twilio auth token X`, `datadog api key is X`. A password needs a digit or a symbol
/// (6+ chars); a token or key must look random. Never a placeholder, path, URL, code,
/// date or version.
fn accept_prose_secret(hit: &Hit<'_>) -> bool {
    let v = hit.secret;
    if is_placeholder(v)
        || is_path(v)
        || v.starts_with(['/', '~'])
        || v.contains("://")
        || is_code_expression(v)
        || is_date_or_version(v)
    {
        return false;
    }
    let key = hit.prefix.to_ascii_lowercase();
    if key.starts_with("pass") {
        return v.chars().count() >= 6 && has_digit_or_symbol(v) && !is_password_variable(v);
    }
    looks_random(v) && v.chars().count() >= 16
}

fn accept_bearer(hit: &Hit<'_>) -> bool {
    looks_random(hit.secret)
}

fn accept_url_password(hit: &Hit<'_>) -> bool {
    !is_placeholder(hit.secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const B64URL: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const B64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const HEX: &str = "0123456789abcdef";
    const UPPER_B32: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

    /// A deterministic fake token of `n` chars from `alphabet` (an LCG, Knuth's MMIX
    /// constants). Fakes are generated so no token-shaped literal sits in the source.
    fn fake(alphabet: &str, n: usize, seed: u64) -> String {
        let chars: Vec<char> = alphabet.chars().collect();
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                chars[((x >> 33) as usize) % chars.len()]
            })
            .collect()
    }

    /// `text` holds exactly one secret, `secret`, of `kind`: scan finds exactly it,
    /// redact replaces exactly it (everything else survives byte for byte), and the
    /// redacted text has nothing left to find.
    fn check(kind: &str, text: &str, secret: &str) {
        assert!(KINDS.contains(&kind), "unknown kind {kind}");
        let found = scan(text);
        assert_eq!(
            found.len(),
            1,
            "{kind}: expected one finding in {text:?}, got {found:?}"
        );
        let f = found[0];
        assert_eq!(f.kind, kind, "{text:?}");
        assert_eq!(&text[f.start..f.end], secret, "{kind}: wrong span");
        let (out, fs) = redact(text);
        assert_eq!(fs, found);
        assert!(!out.contains(secret), "{kind}: secret survived in {out:?}");
        assert_eq!(out, text.replacen(secret, &marker(kind), 1), "{kind}");
        assert!(
            scan(&out).is_empty(),
            "{kind}: not idempotent: {:?}",
            scan(&out)
        );
        assert_eq!(redact(&out).0, out);
    }

    macro_rules! cases {
        ($($name:ident: $kind:expr, |$s:ident| $text:expr;)*) => {
            $(
                #[test]
                fn $name() {
                    let $s: String = secret_for($kind);
                    check($kind, &$text, &$s);
                }
            )*
            /// The kinds that have a test above.
            pub(super) const TESTED_KINDS: &[&str] = &[$($kind),*];
        };
    }

    /// The fake secret used for `kind` in its test.
    fn secret_for(kind: &str) -> String {
        let s = |prefix: &str, alphabet: &str, n: usize| {
            format!(
                "{prefix}{}",
                fake(alphabet, n, kind.len() as u64 + n as u64)
            )
        };
        match kind {
            "gcp_service_account_key" => format!(
                "-----BEGIN PRIVATE KEY-----\\n{}\\n{}\\n-----END PRIVATE KEY-----\\n",
                fake(B64, 64, 1),
                fake(B64, 40, 2)
            ),
            "private_key" => format!(
                "-----BEGIN {}PRIVATE KEY-----\n{}\n{}\n{}==\n-----END RSA PRIVATE KEY-----",
                "RSA ",
                fake(B64, 64, 3),
                fake(B64, 64, 4),
                fake(B64, 30, 5)
            ),
            "age_secret_key" => s("AGE-SECRET-KEY-1", "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58),
            "aws_access_key_id" => s(concat!("AK", "IA"), UPPER_B32, 16),
            "aws_secret_access_key" => s("", B64, 40),
            "azure_account_key" => format!("{}==", fake(B64, 86, 6)),
            "gcp_api_key" => s(concat!("AI", "za"), B64URL, 35),
            "google_oauth_client_secret" => s(concat!("GOC", "SPX-"), B64URL, 28),
            "google_oauth_access_token" => s(concat!("ya", "29."), B64URL, 120),
            "github_token" => s(concat!("gh", "p_"), ALNUM, 36),
            "github_fine_grained_token" => format!(
                "{}{}_{}",
                concat!("github", "_pat_"),
                fake(ALNUM, 22, 7),
                fake(ALNUM, 59, 8)
            ),
            "gitlab_token" => s(concat!("gl", "pat-"), ALNUM, 20),
            "slack_token" => format!(
                "{}{}-{}-{}",
                concat!("xo", "xb-"),
                fake("0123456789", 13, 9),
                fake("0123456789", 13, 10),
                fake(ALNUM, 24, 11)
            ),
            "slack_webhook" => format!(
                "T{}/B{}/{}",
                fake("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 8, 12),
                fake("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 8, 13),
                fake(ALNUM, 24, 14)
            ),
            "anthropic_api_key" => {
                format!("{}{}AA", concat!("sk-", "ant-api03-"), fake(B64URL, 93, 15))
            }
            "openai_api_key" => s(concat!("sk-", "proj-"), B64URL, 156),
            "stripe_secret_key" => s(concat!("sk_", "live_"), ALNUM, 24),
            "twilio_api_key" => s(concat!("S", "K"), HEX, 32),
            "sendgrid_api_key" => format!(
                "{}{}.{}",
                concat!("S", "G."),
                fake(B64URL, 22, 16),
                fake(B64URL, 43, 17)
            ),
            "npm_token" => s(concat!("np", "m_"), ALNUM, 36),
            "pypi_token" => s(concat!("pypi-", "AgEIcHlwaS5vcmc"), B64URL, 120),
            "huggingface_token" => s(concat!("h", "f_"), ALNUM, 34),
            "discord_bot_token" => format!(
                "MTA4NjE2NDk3NjU0MjM0NjI0OA.{}.{}",
                fake(B64URL, 6, 18),
                fake(ALNUM, 38, 19)
            ),
            "discord_webhook" => fake(B64URL, 68, 20),
            "telegram_bot_token" => format!("123456789:AA{}", fake(B64URL, 33, 21)),
            "shopify_token" => s(concat!("shp", "at_"), HEX, 32),
            "digitalocean_token" => s(concat!("dop", "_v1_"), HEX, 64),
            "jwt" => concat!(
                "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
                ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ",
                ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
            )
            .to_string(),
            "url_password" => "s3cr3t-Pa55".to_string(),
            "basic_auth" => "Ym9iOmh1bnRlcjI=".to_string(), // bob:hunter2
            "bearer_token" => s("", B64URL, 40),
            "password_assignment" => "hunter2!".to_string(),
            "secret_assignment" => s("", ALNUM, 32),
            _ => String::new(),
        }
    }

    cases! {
        finds_gcp_service_account_key: "gcp_service_account_key", |k| format!(
            r#"the key file is {{"type": "service_account", "private_key": "{k}", "client_email": "bot@proj.iam.gserviceaccount.com"}} keep it safe"#
        );
        finds_private_key: "private_key", |k| format!(
            "I saved the deploy key:\n{k}\nin the vault yesterday."
        );
        finds_age_secret_key: "age_secret_key", |k| format!("backup identity {k} is in the safe");
        finds_aws_access_key_id: "aws_access_key_id", |k| format!("use {k} for the prod account");
        finds_aws_secret_access_key: "aws_secret_access_key", |k| format!(
            "in ~/.aws/credentials: aws_secret_access_key = {k}\nregion = eu-west-1"
        );
        finds_azure_account_key: "azure_account_key", |k| format!(
            "conn: DefaultEndpointsProtocol=https;AccountName=acme;AccountKey={k};EndpointSuffix=core.windows.net works"
        );
        finds_gcp_api_key: "gcp_api_key", |k| format!("maps key {k} is restricted to our domain");
        finds_google_oauth_client_secret: "google_oauth_client_secret", |k| format!(
            "the OAuth client uses {k} as its secret"
        );
        finds_google_oauth_access_token: "google_oauth_access_token", |k| format!(
            "curl with token {k} returned 200"
        );
        finds_github_token: "github_token", |k| format!("my GitHub token is {k}, expires in May");
        finds_github_fine_grained_token: "github_fine_grained_token", |k| format!(
            "CI uses {k} for the release job"
        );
        finds_gitlab_token: "gitlab_token", |k| format!("GitLab PAT {k} (read_api only)");
        finds_slack_token: "slack_token", |k| format!("the bot posts with {k} into #ops");
        finds_slack_webhook: "slack_webhook", |k| format!(
            "alerts go to https://hooks.slack.com/services/{k} every night"
        );
        finds_anthropic_api_key: "anthropic_api_key", |k| format!(
            "export ANTHROPIC_API_KEY {k} before running"
        );
        finds_openai_api_key: "openai_api_key", |k| format!("the OpenAI key {k} belongs to team X");
        finds_stripe_secret_key: "stripe_secret_key", |k| format!("Stripe live key {k} was rotated");
        finds_twilio_api_key: "twilio_api_key", |k| format!("Twilio API key SID {k} for SMS");
        finds_sendgrid_api_key: "sendgrid_api_key", |k| format!("SendGrid key {k} sends the mails");
        finds_npm_token: "npm_token", |k| format!("publish with {k} from CI");
        finds_pypi_token: "pypi_token", |k| format!("twine upload uses {k} as password");
        finds_huggingface_token: "huggingface_token", |k| format!("HF token {k} can read gated models");
        finds_discord_bot_token: "discord_bot_token", |k| format!("the Discord bot logs in with {k} now");
        finds_discord_webhook: "discord_webhook", |k| format!(
            "post to https://discord.com/api/webhooks/112233445566778899/{k} for releases"
        );
        finds_telegram_bot_token: "telegram_bot_token", |k| format!("BotFather gave me {k} today");
        finds_shopify_token: "shopify_token", |k| format!("Shopify admin token {k} for the store");
        finds_digitalocean_token: "digitalocean_token", |k| format!("doctl auth init with {k} works");
        finds_jwt: "jwt", |k| format!("the session cookie was {k} until logout");
        finds_url_password: "url_password", |k| format!(
            "connect with postgres://bob:{k}@db.internal:5432/app and run the migration"
        );
        finds_basic_auth: "basic_auth", |k| format!(
            "curl -H 'Authorization: Basic {k}' https://api.example.com/v1 worked"
        );
        finds_bearer_token: "bearer_token", |k| format!(
            "send Authorization: Bearer {k} with every request"
        );
        finds_password_assignment: "password_assignment", |k| format!(
            "the config has db_password={k} and user=admin"
        );
        finds_secret_assignment: "secret_assignment", |k| format!(
            "set stripe_api_key: \"{k}\" in config.yaml"
        );
    }

    #[test]
    fn every_pattern_compiles() {
        for spec in SPECS {
            assert!(
                compile(spec).is_ok(),
                "{}: {:?}",
                spec.kind,
                compile(spec).err()
            );
        }
        assert_eq!(DETECTORS.len(), SPECS.len());
        assert!(MARKER.is_some());
    }

    #[test]
    fn kinds_are_unique_and_all_tested() {
        assert!(KINDS.len() >= 21, "at least 20 patterns");
        let found = super::corpus::kinds_found();
        for (i, k) in KINDS.iter().enumerate() {
            assert!(!KINDS[..i].contains(k), "duplicate kind {k}");
            assert!(
                *k == SECRET_FIELD || TESTED_KINDS.contains(k) || found.contains(k),
                "kind {k} has no test and is not found in the corpus"
            );
        }
        assert_eq!(KINDS.last(), Some(&SECRET_FIELD));
    }

    /// The kinds the issue found stored in clear, each exactly redacted (span, rest of the
    /// text kept, idempotent).
    #[test]
    fn shapes_missed_before() {
        let kid = format!("{}{}", concat!("AK", "IA"), fake(UPPER_B32, 16, 40));
        let sec = fake(B64, 40, 41);
        // Both halves of the pair.
        let text = format!("key pair {kid} / {sec} for backups");
        assert_eq!(
            redact(&text).0,
            "key pair [REDACTED:aws_access_key_id] / [REDACTED:aws_secret_access_key] for backups"
        );
        check(
            "url_password",
            "DATABASE_URL=postgres://app:Tr0ub#dor!x@db:5432/app",
            "Tr0ub#dor!x",
        );
        let django = format!("django-insecure-{}", fake(B64, 40, 42));
        check(
            "env_secret",
            &format!("SECRET_KEY={django}\nDEBUG=0"),
            &django,
        );
        check(
            "env_secret",
            "export JWT_SECRET=correcthorsebatterystaple",
            "correcthorsebatterystaple",
        );
        let sig = format!("{}%2B{}%3D", fake(ALNUM, 30, 43), fake(ALNUM, 10, 44));
        check(
            "azure_sas_signature",
            &format!("https://a.blob.core.windows.net/c?sv=2022-11-02&sp=r&sig={sig}"),
            &sig,
        );
        let auth = fake(B64, 24, 45);
        check(
            "docker_auth",
            &format!(r#"{{"auths": {{"ghcr.io": {{"auth": "{auth}"}}}}}}"#),
            &auth,
        );
        let tok = fake(HEX, 32, 46);
        check(
            "secret_in_prose",
            &format!("my twilio auth token is {tok}"),
            &tok,
        );
        check(
            "secret_in_prose",
            "the wifi password is oijvc3172!",
            "oijvc3172!",
        );
        let flag = fake(ALNUM, 24, 47);
        check(
            "cli_secret_flag",
            &format!("vercel deploy --token {flag}"),
            &flag,
        );
        check(
            "cli_secret_flag",
            "mysql -u root -ps3cr3tPw acme",
            "s3cr3tPw",
        );
        let dsn = fake(HEX, 32, 48);
        check(
            "sentry_dsn",
            &format!("dsn=https://{dsn}@o450123.ingest.sentry.io/5512345"),
            &dsn,
        );
        // Words, references and code after the same keys are not secrets.
        for clean in [
            "the token is read from $TOKEN_FILE at startup",
            "SECRET_KEY=${DJANGO_SECRET_KEY} and PASSWORD_MIN_LENGTH=12",
            "pass --password-stdin to docker login; --api-key is required",
            "the admin password is required for this step",
            "SECRET_KEY_FILE=/run/secrets/django_key",
        ] {
            assert!(
                scan(clean).is_empty(),
                "{clean}: {:?}",
                describe(clean, &scan(clean))
            );
        }
    }

    #[test]
    fn more_shapes_of_each_family() {
        let legacy = format!(
            "{}{}T3BlbkFJ{}",
            "sk-",
            fake(ALNUM, 20, 30),
            fake(ALNUM, 20, 31)
        );
        check(
            "openai_api_key",
            &format!("old key {legacy} still works"),
            &legacy,
        );
        let rk = format!("{}{}", concat!("rk_", "test_"), fake(ALNUM, 24, 32));
        check("stripe_secret_key", &format!("restricted {rk} ok"), &rk);
        let ghs = format!("{}{}", concat!("gh", "s_"), fake(ALNUM, 36, 33));
        check("github_token", &format!("app token {ghs}."), &ghs);
        let xoxp = format!(
            "{}-{}-{}-{}",
            concat!("xo", "xp"),
            "1234567890",
            "2345678901",
            fake(HEX, 32, 34)
        );
        check("slack_token", &format!("user token {xoxp} here"), &xoxp);
        let asia = format!("{}{}", concat!("AS", "IA"), fake(UPPER_B32, 16, 35));
        check("aws_access_key_id", &format!("temp creds {asia}"), &asia);
        // PEM variants, and a block pasted without its END line.
        for label in ["EC ", "OPENSSH ", "DSA ", "ENCRYPTED ", ""] {
            let k = format!(
                "-----BEGIN {label}PRIVATE KEY-----\n{}\n-----END {label}PRIVATE KEY-----",
                fake(B64, 64, 36)
            );
            check("private_key", &format!("key:\n{k}\ndone"), &k);
        }
        let pgp = format!(
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{}\n=abcd\n-----END PGP PRIVATE KEY BLOCK-----",
            fake(B64, 64, 37)
        );
        check("private_key", &format!("gpg export: {pgp} (old)"), &pgp);
        let cut = format!("-----BEGIN RSA PRIVATE KEY-----\n{}", fake(B64, 64, 38));
        check("private_key", &format!("truncated paste: {cut}"), &cut);
        // Password shapes: quoted, JSON, YAML with a digit, ADO.NET, URL query, redis.
        check(
            "password_assignment",
            r#"{"password": "correct horse"} in the fixture"#,
            "correct horse",
        );
        check(
            "password_assignment",
            "db:\n  password: s3cret\n  host: db",
            "s3cret",
        );
        check(
            "password_assignment",
            "Server=db;User Id=sa;Pwd=Tr0ub4dor;Database=x",
            "Tr0ub4dor",
        );
        check(
            "password_assignment",
            "GET /login?user=bob&password=hunter2&next=/ ok",
            "hunter2",
        );
        check(
            "password_assignment",
            "pin: password=123456 for the safe",
            "123456",
        );
        check(
            "password_assignment",
            "let password = \"Pa55word\"; // TODO remove",
            "Pa55word",
        );
        check("env_secret", "DB_PASSWORD=letmein\nDB_HOST=db", "letmein");
        check("env_secret", "MYSQL_PWD=rootroot mysql -u root", "rootroot");
        check(
            "password_assignment",
            "pin: password=123456 for the safe",
            "123456",
        );
        check(
            "password_assignment",
            "let password = \"Pa55word\"; // TODO remove",
            "Pa55word",
        );
        check("env_secret", "export MYSQL_PASS='letmein' then", "letmein");
        check(
            "url_password",
            "REDIS_URL=redis://:p4ssw0rd@cache:6379/0 set",
            "p4ssw0rd",
        );
        check(
            "url_password",
            "git clone https://bob:tok3n@git.example.com/r.git",
            "tok3n",
        );
        check(
            "url_password",
            "amqp://bob:p@ss:w0rd@mq:5672/ ok",
            "p@ss:w0rd",
        );
        check(
            "url_password",
            "https://bob@example.com:pw9x@mail.example.com/x",
            "pw9x",
        );
        check(
            "url_password",
            "jdbc:mysql://root:R00t!@db:3306/app",
            "R00t!",
        );
        check(
            "url_password",
            "mongodb+srv://app:S3cr3t@cluster0.abc.mongodb.net/db",
            "S3cr3t",
        );
        let api = fake(ALNUM, 40, 39);
        check(
            "secret_assignment",
            &format!("client_secret: {api}\nredirect: /cb"),
            &api,
        );
        check(
            "secret_assignment",
            &format!("X-Api-Key={api} header"),
            &api,
        );
        let gsa = format!(
            "\"private_key\": \"{}\"",
            secret_for("gcp_service_account_key")
        );
        assert_eq!(scan(&gsa).len(), 1);
    }

    #[test]
    fn specific_kinds_win_over_generic_ones() {
        let ant = secret_for("anthropic_api_key");
        let f = scan(&format!("OPENAI_API_KEY={ant}"));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, "anthropic_api_key");
        let gh = secret_for("github_token");
        let f = scan(&format!("Authorization: Bearer {gh}"));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, "github_token");
        let jwt = secret_for("jwt");
        let f = scan(&format!("token = \"{jwt}\""));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].kind, "jwt");
    }

    #[test]
    fn several_secrets_in_one_text_are_ordered_and_all_replaced() {
        let gh = secret_for("github_token");
        let aws = secret_for("aws_access_key_id");
        let text = format!("a {gh} b postgres://u:pw123@h/x c {aws} d password=\"x9\" e");
        let (out, f) = redact(&text);
        let kinds: Vec<&str> = f.iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            [
                "github_token",
                "url_password",
                "aws_access_key_id",
                "password_assignment"
            ]
        );
        assert!(f.windows(2).all(|w| w[0].end <= w[1].start));
        assert_eq!(
            out,
            "a [REDACTED:github_token] b postgres://u:[REDACTED:url_password]@h/x c \
             [REDACTED:aws_access_key_id] d password=\"[REDACTED:password_assignment]\" e"
        );
        assert_eq!(
            summary(&f),
            "github_token, url_password, aws_access_key_id, password_assignment"
        );
        assert_eq!(redact(&out).0, out);
        assert!(scan(&out).is_empty());
    }

    #[test]
    fn random_tokens_versus_dates_versions_and_repetition() {
        assert!(entropy("aaaaaaaaaaaaaaaa") < 0.01);
        assert!((entropy("abcd") - 2.0).abs() < 1e-9);
        for seed in 0..200 {
            for t in [
                fake(ALNUM, 16, seed),
                fake(HEX, 32, seed),
                fake(B64URL, 24, seed),
            ] {
                assert!(
                    looks_random(&t) || !t.contains(|c: char| c.is_ascii_digit()),
                    "{t}"
                );
            }
        }
        for v in [
            "2024-05-07T12:00:00Z",
            "v2.1.0-beta.3",
            "1.2.3-rc.1+build.5",
            "2023-05-25_10:30",
            "aaaaaaaaaaa1",
            "abcabcabcab1",
            "short1",
        ] {
            assert!(!looks_random(v), "{v}");
        }
        for v in [
            "a1b2c3d4e5f6a7",
            "Tr0ub4dor3xyzQ",
            "AbCdEf12-3456-7890",
            "ab12-cd34-ef56-gh78",
        ] {
            assert!(looks_random(v), "{v}");
        }
    }

    #[test]
    fn many_secrets_are_all_replaced() {
        // 5,000 URL passwords (55 KB); timing printed (the overlap test is O(log n)).
        let text = "pg://a:b@h ".repeat(5_000);
        let t0 = std::time::Instant::now();
        let (out, f) = redact(&text);
        let dt = t0.elapsed();
        assert_eq!(f.len(), 5_000);
        assert_eq!(out, "pg://a:[REDACTED:url_password]@h ".repeat(5_000));
        println!("5,000 findings in {:.1} ms", dt.as_secs_f64() * 1e3);
        let t0 = std::time::Instant::now();
        assert!(scan(&out).is_empty());
        println!(
            "rescan of 20,000 markers in {:.1} ms",
            t0.elapsed().as_secs_f64() * 1e3
        );
    }

    #[test]
    fn spans_overlap() {
        let mut s = Spans::default();
        s.insert(10, 20);
        s.insert(30, 40);
        assert!(!s.overlaps(0, 10) && !s.overlaps(20, 30) && !s.overlaps(40, 50));
        assert!(s.overlaps(5, 11) && s.overlaps(19, 21) && s.overlaps(15, 16));
        assert!(s.overlaps(0, 100) && s.overlaps(25, 35) && s.overlaps(39, 45));
    }

    #[test]
    fn summary_counts_kinds() {
        let f = |kind| Finding {
            kind,
            start: 0,
            end: 1,
        };
        assert_eq!(
            summary(&[f("jwt"), f("url_password"), f("jwt")]),
            "jwt x2, url_password"
        );
        assert_eq!(summary(&[]), "");
    }

    #[test]
    fn prose_and_code_are_not_secrets() {
        let clean = [
            "I went hiking with Melanie last weekend; we talked about passwords and tokens.",
            "Please send me a password reset link, I forgot my password again.",
            "The password must be at least 12 characters long.",
            "Password: required. Token: see the admin panel.",
            "the secret: nobody knows",
            "He is the bearer of bad news and the bearer of the ring.",
            "Basic instinct is a movie; authorization is pending.",
            "let api_key = std::env::var(\"OPENAI_API_KEY\")?;",
            "password = getpass.getpass()",
            "self.secret_key = config.secret_key",
            "password = os.environ[\"DB_PASSWORD\"]",
            "password=${DB_PASSWORD} user=$USER",
            "password: <your password here>",
            r#"{"password": "", "token": null}"#,
            "PWD=/home/bob/src/subcog OLDPWD=/home/bob",
            "MAX_TOKENS=4096 and max_token: 8192",
            "def get_access_token(self, refresh_token: str) -> str:",
            "tokenizer.encode(text); token_count = len(tokens)",
            "pip install scikit-learn; import sklearn; sk-learn is a typo",
            "skip_connection_handler_for_secondary_databases",
            "request id 550e8400-e29b-41d4-a716-446655440000 failed",
            "fixed in commit e83c5163316f89bfbde7d9ab23ca2e25604af290 (HEAD)",
            "sha256 8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
            "see https://github.com/snap-research/LoCoMo/blob/main/README.md",
            "https://example.com:8443/path?x=1&y=2#frag and http://localhost:3000/api",
            "git@github.com:org/repo.git and ssh://git@github.com/org/repo.git",
            "mailto:bob@example.com, bob@example.com, call +1-555-0100 at 12:30",
            "IPv6 fe80::1ff:fe23:4567:890a and [2001:db8::1]:8080",
            "postgres://user:****@db/x and postgres://user:${PGPASSWORD}@db/x",
            "The AKIA prefix marks AWS keys; sk_test_ and ghp_ are prefixes too.",
            "eyJhbGciOiJIUzI1NiJ9 is only a JWT header",
            "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
            "secret_santa = \"Caroline\"; credentials: pending",
            "Das Passwort ist geheim — niemand kennt es. 密码 token 秘密",
            "if password == user_input: and password === other",
            "password: string; password: str = Field(...); password: req.body.password,",
            "token: 2024-05-07T12:00:00Z and api_version: v2.1.0-beta.3",
            "private_key: ~/.ssh/id_ed25519 and private_key=/etc/ssl/private/server2.key",
            "token_endpoint: https://oauth2.googleapis.com/token2 and token: https://x.io/t0ken/abc",
            "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----",
            "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
            "Bearer tokens like abcdefgh12345678 are short-lived; bearer 0000000000000000a",
            // Code seen in the wild (crates.io sources): types, constants, enum values.
            "pub password: *const u16, pwd: *mut passwd, pub Password: super::Foundation::UNICODE_STRING,",
            "pub type NT_OWF_PASSWORD = LM_OWF_PASSWORD; TASK_LOGON_PASSWORD = 1, X_PASS = 1010,",
            "DEVSTAT_PRIORITY_PASS = 0x030, MsV1_0ChangePassword: MSV1_0_PROTOCOL_MESSAGE_TYPE = 5i32;",
            "pub ikeCredentials: IKEEXT_CREDENTIALS0, DialogToken: DOT11_DIALOG_TOKEN, frag_token: crate::__u32,",
            "static TOKEN: OnceLock<u64> = OnceLock::new(); jsonwebtoken::Algorithm::ES256 => x,",
            "type RevocableToken = oauth2::StandardRevocableToken; AccessToken: WBEM_128BITS,",
            "let pwd = unsafe { pwd.assume_init() };",
            "self.password = password; password=password, username, password = auth",
            "self.key_password = key_password; username, secret_password = user_pass",
            "util._assertion_pass = call_assertion_pass_hook; self.first_pass = use_cache",
            "username, password = value\n    if password == \"-\": pass",
        ];
        for text in clean {
            let f = scan(text);
            assert!(
                f.is_empty(),
                "false positive in {text:?}: {:?}",
                describe(text, &f)
            );
            assert_eq!(redact(text).0, text);
        }
    }

    /// The findings with their text, for assertion messages in tests.
    fn describe<'a>(text: &'a str, f: &[Finding]) -> Vec<(&'static str, &'a str)> {
        f.iter().map(|f| (f.kind, &text[f.start..f.end])).collect()
    }

    #[test]
    fn offsets_are_char_boundaries_in_unicode_text() {
        let gh = secret_for("github_token");
        let text = format!("клуч — {gh} — 秘密");
        let (out, f) = redact(&text);
        assert_eq!(f.len(), 1);
        assert!(text.is_char_boundary(f[0].start) && text.is_char_boundary(f[0].end));
        assert_eq!(out, "клуч — [REDACTED:github_token] — 秘密");
    }

    #[test]
    fn redact_json_handles_nested_metadata() {
        let gh = secret_for("github_token");
        let json = format!(
            r#"{{"source": "chat", "db": {{"password": "hunter2", "host": "db.internal", "port": 5432,
               "url": "mysql://root:r00tpw@db/app"}}, "apiKey": "plain words", "token": "{gh}",
               "notes": ["deploy with {gh}", "nothing here"], "secret_santa": "Bob",
               "password_hint": "pet name", "empty_password": "", "count": 3, "ok": true}}"#
        );
        let (out, f) = redact_json(&json).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        assert!(v.is_object(), "not valid JSON: {out}");
        assert!(
            !out.contains("hunter2") && !out.contains("r00tpw") && !out.contains(&gh),
            "{out}"
        );
        assert!(!out.contains("plain words"));
        assert_eq!(v["db"]["password"], "[REDACTED:secret_field]");
        assert_eq!(v["db"]["host"], "db.internal");
        assert_eq!(v["db"]["port"], 5432);
        assert_eq!(
            v["db"]["url"],
            "mysql://root:[REDACTED:url_password]@db/app"
        );
        assert_eq!(v["apiKey"], "[REDACTED:secret_field]");
        assert_eq!(v["token"], "[REDACTED:github_token]");
        assert_eq!(v["notes"][0], "deploy with [REDACTED:github_token]");
        assert_eq!(v["notes"][1], "nothing here");
        assert_eq!(v["secret_santa"], "Bob");
        assert_eq!(v["password_hint"], "pet name");
        assert_eq!(v["empty_password"], "");
        assert_eq!(v["count"], 3);
        assert_eq!(v["ok"], true);
        assert_eq!(f.len(), 5, "{f:?}");
        assert!(
            !out.contains('\n') && !out.contains(": "),
            "not compact: {out}"
        );
        // Idempotent.
        let (again, f2) = redact_json(&out).unwrap_or_default();
        assert_eq!(again, out);
        assert!(f2.is_empty(), "{f2:?}");
    }

    #[test]
    fn redact_json_tags_keys_and_errors() {
        let gh = secret_for("github_token");
        let (out, f) = redact_json(&format!(r#"["work", "{gh}"]"#)).unwrap_or_default();
        assert_eq!(out, r#"["work","[REDACTED:github_token]"]"#);
        assert_eq!(f.len(), 1);
        let (out, f) = redact_json(r#"{"a": 1, "b": [1, "x"]}"#).unwrap_or_default();
        assert_eq!(out, r#"{"a":1,"b":[1,"x"]}"#);
        assert!(f.is_empty());
        // A secret used as a key is redacted too; two such keys do not collide.
        let gh2 = fake(ALNUM, 36, 99);
        let json = format!(r#"{{"{gh}": 1, "ghp_{gh2}": 2}}"#);
        let (out, f) = redact_json(&json).unwrap_or_default();
        assert_eq!(f.len(), 2);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        assert_eq!(v.as_object().map(|m| m.len()), Some(2), "{out}");
        assert!(!out.contains(&gh) && !out.contains(&gh2));
        let err = redact_json("{oops")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("invalid JSON"), "{err}");
    }

    #[test]
    fn secret_keys() {
        for k in [
            "password",
            "DB_PASSWORD",
            "apiKey",
            "api-key",
            "client_secret",
            "X-Auth-Token",
            "private_key",
            "AWS_SECRET_ACCESS_KEY",
            "access_key",
            "passphrase",
            "credentials",
            "Authorization",
            "signing_key",
        ] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "token_count",
            "secret_santa",
            "password_hint",
            "tokens",
            "key",
            "author",
            "access_key_id",
            "keyword",
            "pass_rate",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn enforce_applies_each_policy() {
        let gh = secret_for("github_token");
        let text = format!("deploy with {gh} today");
        let redacted = "deploy with [REDACTED:github_token] today";
        let r = enforce_text(SecretPolicy::Redact, "content", &text).unwrap_or_default();
        assert_eq!(r, redacted);
        let r = enforce_text(SecretPolicy::Allow, "content", &text).unwrap_or_default();
        assert_eq!(r, text);
        let err = enforce_text(SecretPolicy::Reject, "content", &text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("column content") && err.contains("github_token"),
            "{err}"
        );
        assert!(
            err.contains("secrets=reject") && !err.contains(&gh),
            "{err}"
        );
        // Clean text is borrowed, not copied, under every policy.
        for p in [
            SecretPolicy::Redact,
            SecretPolicy::Reject,
            SecretPolicy::Allow,
        ] {
            let r = enforce_text(p, "content", "hello world");
            assert!(matches!(r, Ok(Cow::Borrowed("hello world"))));
            let r = enforce_json(p, "metadata", r#"{"a":1}"#);
            assert!(matches!(r, Ok(Cow::Borrowed(r#"{"a":1}"#))));
        }
        let json = format!(r#"{{"note":"{gh}","password":"x"}}"#);
        let r = enforce_json(SecretPolicy::Redact, "metadata", &json).unwrap_or_default();
        assert_eq!(
            r,
            r#"{"note":"[REDACTED:github_token]","password":"[REDACTED:secret_field]"}"#
        );
        let err = enforce_json(SecretPolicy::Reject, "metadata", &json)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("column metadata") && err.contains("github_token, secret_field"),
            "{err}"
        );
        assert_eq!(
            enforce_json(SecretPolicy::Allow, "tags", &json).unwrap_or_default(),
            json
        );
    }

    #[test]
    fn policy_parse_and_names() {
        assert_eq!(SecretPolicy::default(), SecretPolicy::Redact);
        for p in [
            SecretPolicy::Redact,
            SecretPolicy::Reject,
            SecretPolicy::Allow,
        ] {
            assert_eq!(SecretPolicy::parse(p.name()).ok(), Some(p));
            assert_eq!(SecretPolicy::parse(&p.name().to_uppercase()).ok(), Some(p));
        }
        assert_eq!(
            SecretPolicy::parse(" Reject ").ok(),
            Some(SecretPolicy::Reject)
        );
        let err = SecretPolicy::parse("mask")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("secrets")
                && err.contains("redact, reject, allow")
                && err.contains("'mask'"),
            "{err}"
        );
    }

    /// Every turn of the LoCoMo dev conversations (ordinary chat) is free of secrets.
    #[test]
    fn locomo_turns_have_no_secrets() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/locomo-dev.json");
        let Ok(raw) = std::fs::read_to_string(&path) else {
            println!("skipped: {} not found", path.display());
            return;
        };
        let data: serde_json::Value = serde_json::from_str(&raw).unwrap_or_default();
        let mut texts: Vec<&str> = Vec::new();
        for conv in data.as_array().into_iter().flatten() {
            let Some(c) = conv["conversation"].as_object() else {
                continue;
            };
            for (key, turns) in c {
                if !key.starts_with("session_") || key.ends_with("date_time") {
                    continue;
                }
                for turn in turns.as_array().into_iter().flatten() {
                    texts.extend(turn["text"].as_str());
                    texts.extend(turn["blip_caption"].as_str());
                }
            }
        }
        assert!(
            texts.len() > 1000,
            "expected the LoCoMo turns, got {}",
            texts.len()
        );
        let t0 = std::time::Instant::now();
        let mut bad = Vec::new();
        let mut bytes = 0;
        for t in &texts {
            bytes += t.len();
            let f = scan(t);
            if !f.is_empty() {
                bad.push((
                    t.to_string(),
                    describe(t, &f)
                        .iter()
                        .map(|(k, s)| format!("{k}:{s}"))
                        .collect::<Vec<_>>(),
                ));
            }
        }
        let dt = t0.elapsed();
        // Personal data in ordinary chat (`pii=redact` by default): counted, not refused.
        let pii: Vec<String> = texts
            .iter()
            .flat_map(|t| {
                scan_with(t, true)
                    .into_iter()
                    .filter(|f| is_pii(f.kind))
                    .map(|f| format!("{}:{}", f.kind, &t[f.start..f.end]))
            })
            .collect();
        println!(
            "personal data in LoCoMo: {} findings {:?}",
            pii.len(),
            &pii[..pii.len().min(10)]
        );
        println!(
            "scanned {} LoCoMo texts ({} bytes) in {:.1} ms ({:.1} us/text)",
            texts.len(),
            bytes,
            dt.as_secs_f64() * 1e3,
            dt.as_secs_f64() * 1e6 / texts.len() as f64
        );
        assert!(
            bad.is_empty(),
            "{} texts with findings: {:?}",
            bad.len(),
            &bad[..bad.len().min(10)]
        );
    }
}
