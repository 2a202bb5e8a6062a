#!/usr/bin/env python3
"""Writes the secrets/PII corpus (secrets.jsonl) and the ordinary sentences (clean.jsonl).

Each secret follows its provider's documented token format (prefix, alphabet, length), as
also collected by the gitleaks, detect-secrets and trufflehog rule sets; the random part
comes from a seeded generator so the corpus is reproducible and holds no real credential.
Sentences are the kinds of things an agent stores: shell transcripts, .env lines, config
snippets, chat. Run from the repository root: `python3 tests/data/secrets/make_corpus.py`.
The test `redact::corpus::corpus_recall_and_false_positives` reads both files.
"""
import base64
import json
import os
import random
import string

R = random.Random(15)
UP = string.ascii_uppercase
LO = string.ascii_lowercase
DIG = string.digits
ALNUM = UP + LO + DIG
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
B32 = UP + "234567"


def r(alpha, n):
    return "".join(R.choice(alpha) for _ in range(n))


def luhn_complete(prefix, length):
    body = prefix + r(DIG, length - len(prefix) - 1)
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return body + str((10 - total % 10) % 10)


def luhn_ok(num):
    total = 0
    for i, ch in enumerate(reversed(num)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def group(num, sizes, sep):
    out, i = [], 0
    for s in sizes:
        out.append(num[i:i + s])
        i += s
    return sep.join(out)


def ssn():
    while True:
        a = R.randint(1, 899)
        if a != 666:
            break
    return f"{a:03d}-{R.randint(1, 99):02d}-{R.randint(1, 9999):04d}"


def jwt_like(payload):
    h = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
    p = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    return f"{h}.{p}.{r(B64URL, 43)}"


SECRETS = []


def add(kind, secret, *templates):
    for t in templates:
        SECRETS.append({"kind": kind, "text": t.replace("{S}", secret), "secret": secret})


def add_each(kind, make, *templates):
    """One fresh secret per template."""
    for t in templates:
        s = make()
        SECRETS.append({"kind": kind, "text": t.replace("{S}", s), "secret": s})


# ---- cloud providers ----
add_each("aws_access_key_id", lambda: "AKIA" + r(B32, 16),
         "aws configure set aws_access_key_id {S}",
         "the CI user's key id is {S}, rotate it monthly")
add_each("aws_session_key_id", lambda: "ASIA" + r(B32, 16),
         "sts returned AccessKeyId {S} for the assumed role")
for i in range(3):
    kid = "AKIA" + r(B32, 16)
    sec = r(B64, 40)
    tmpl = [
        f"AWS key pair for the backup job: {kid} / {{S}}",
        f"access key {kid} secret {{S}} (created by terraform)",
        f"[default]\naws_access_key_id = {kid}\naws_secret_access_key = {{S}}\n",
    ][i]
    add("aws_secret_access_key", sec, tmpl)
add_each("aws_secret_access_key", lambda: r(B64, 40),
         "export AWS_SECRET_ACCESS_KEY={S}")
add_each("gcp_api_key", lambda: "AIza" + r(B64URL, 35),
         "maps embed uses key={S} in the iframe src",
         "Gemini API key: {S}")
add_each("gcp_service_account_private_key",
         lambda: "-----BEGIN PRIVATE KEY-----\\n" + r(B64, 64) + "\\n" + r(B64, 64) + "\\n-----END PRIVATE KEY-----\\n",
         '{"type": "service_account", "project_id": "acme-prod", "private_key": "{S}", "client_email": "ci@acme-prod.iam.gserviceaccount.com"}')
add_each("google_oauth_client_secret", lambda: "GOCSPX-" + r(B64URL, 28),
         "OAuth client for the desktop app, client secret {S}")
add_each("google_oauth_access_token", lambda: "ya29." + r(B64URL, 150),
         "curl -H 'Authorization: Bearer {S}' https://www.googleapis.com/drive/v3/files")
add_each("azure_storage_account_key", lambda: r(B64, 86) + "==",
         "DefaultEndpointsProtocol=https;AccountName=acmelogs;AccountKey={S};EndpointSuffix=core.windows.net")
add_each("azure_sas_signature", lambda: r(ALNUM, 30) + "%2B" + r(ALNUM, 10) + "%2F" + r(ALNUM, 5) + "%3D",
         "upload with https://acmelogs.blob.core.windows.net/backups?sv=2022-11-02&ss=b&srt=co&sp=rwdlac&se=2026-12-31T00:00:00Z&st=2026-01-01T00:00:00Z&spr=https&sig={S}",
         "the SAS token is sv=2021-08-06&sr=c&sp=rl&se=2026-06-30&sig={S}")
add_each("azure_ad_client_secret", lambda: r(ALNUM, 3) + R.choice(DIG) + "Q~" + r(ALNUM + "_~.-", 34),
         "app registration acme-api: client secret {S} expires in 6 months",
         "AZURE_CLIENT_SECRET={S}")
add_each("azure_service_bus_key", lambda: r(B64, 43) + "=",
         "Endpoint=sb://acme.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={S}")
add_each("alibaba_access_key_id", lambda: "LTAI" + r(ALNUM, 20),
         "aliyun configure --access-key-id {S}")
add_each("digitalocean_token", lambda: "dop_v1_" + r(HEX, 64),
         "doctl auth init --access-token {S}")
add_each("linode_token", lambda: r(HEX, 64),
         "LINODE_TOKEN={S}")
add_each("heroku_api_key", lambda: "HRKU-AA" + r(B64URL, 58),
         "heroku authorizations:create printed {S}")
add_each("fly_io_token", lambda: "fo1_" + r(B64URL, 43),
         "FLY_API_TOKEN={S} flyctl deploy")
add_each("cloudflare_api_token", lambda: r(B64URL, 40),
         "CLOUDFLARE_API_TOKEN={S}",
         "cloudflare api token: {S}")
add_each("cloudflare_origin_ca_key", lambda: "v1.0-" + r(HEX, 24) + "-" + r(HEX, 146),
         "origin CA key {S}")
add_each("vercel_token", lambda: r(ALNUM, 24),
         "vercel deploy --token {S}")
add_each("netlify_token", lambda: "nfp_" + r(ALNUM, 36),
         "NETLIFY_AUTH_TOKEN={S}")
add_each("supabase_token", lambda: "sbp_" + r(HEX, 40),
         "supabase login --token {S}")
add_each("terraform_cloud_token", lambda: r(ALNUM, 14) + ".atlasv1." + r(ALNUM + "-_", 67),
         'credentials "app.terraform.io" { token = "{S}" }',
         "TFC token {S} for the acme org")
add_each("vault_token", lambda: "hvs." + r(B64URL, 95),
         "export VAULT_TOKEN={S}",
         "vault login {S}")
add_each("vault_batch_token", lambda: "hvb." + r(B64URL, 150),
         "the batch token {S} expires with its parent")
add_each("pulumi_token", lambda: "pul-" + r(HEX, 40),
         "PULUMI_ACCESS_TOKEN={S} pulumi up")
add_each("doppler_token", lambda: "dp.pt." + r(ALNUM, 43),
         "doppler configure set token {S}")
add_each("onepassword_service_account_token", lambda: "ops_eyJ" + r(B64, 260),
         "OP_SERVICE_ACCOUNT_TOKEN={S}")
add_each("databricks_token", lambda: "dapi" + r(HEX, 32),
         "databricks configure --token, then paste {S}",
         "host = https://adb-1234567890123456.7.azuredatabricks.net\ntoken = {S}")
add_each("planetscale_password", lambda: "pscale_pw_" + r(ALNUM + "_", 43),
         "mysql -h aws.connect.psdb.cloud -u acme -p{S}")
add_each("planetscale_token", lambda: "pscale_tkn_" + r(ALNUM + "_", 43),
         "PLANETSCALE_SERVICE_TOKEN={S}")
add_each("neon_api_key", lambda: "napi_" + r(LO + DIG, 64),
         "Neon API key {S}")
add_each("tailscale_auth_key", lambda: "tskey-auth-" + r(ALNUM, 17) + "-" + r(ALNUM, 32),
         "tailscale up --authkey={S}")
add_each("docker_hub_pat", lambda: "dckr_pat_" + r(B64URL, 27),
         "echo {S} | docker login -u acme --password-stdin")
add_each("docker_config_auth", lambda: base64.b64encode(("acme:" + r(ALNUM, 18)).encode()).decode(),
         '{"auths": {"https://index.docker.io/v1/": {"auth": "{S}"}}}',
         '~/.docker/config.json has {"auths":{"ghcr.io":{"auth":"{S}"}}}')
add_each("kubernetes_sa_token", lambda: jwt_like({"iss": "kubernetes/serviceaccount", "sub": "system:serviceaccount:ci:deployer"}),
         "kubectl --token={S} get pods")
add_each("openshift_token", lambda: "sha256~" + r(B64URL, 43),
         "oc login --token={S} --server=https://api.ocp.acme.internal:6443")

# ---- source control and CI ----
add_each("github_pat", lambda: "ghp_" + r(ALNUM, 36),
         "git clone https://{S}@github.com/acme/infra.git",
         "gh auth login --with-token <<< {S}")
add_each("github_fine_grained_pat", lambda: "github_pat_" + r(ALNUM, 22) + "_" + r(ALNUM, 59),
         "fine-grained token {S} with contents:read")
add_each("github_oauth_token", lambda: "gho_" + r(ALNUM, 36),
         "the OAuth app got {S} back")
add_each("github_app_token", lambda: "ghs_" + r(ALNUM, 36),
         "installation token {S} is valid for an hour")
add_each("gitlab_pat", lambda: "glpat-" + r(B64URL, 20),
         "GITLAB_TOKEN={S}",
         "gitlab personal token {S} (api scope)")
add_each("gitlab_runner_token", lambda: "glrt-" + r(B64URL, 20),
         "gitlab-runner register --token {S}")
add_each("bitbucket_app_password", lambda: "ATBB" + r(ALNUM, 32),
         "bitbucket app password {S}")
add_each("atlassian_api_token", lambda: "ATATT3xFfGF0" + r(B64URL, 180) + "=" + r(HEX.upper(), 8),
         "JIRA_API_TOKEN={S}",
         "the Confluence token is {S}")
add_each("atlassian_api_token_legacy", lambda: r(LO + DIG, 24),
         "jira_api_token: {S}")
add_each("circleci_token", lambda: "CCIPAT_" + r(ALNUM, 22) + "_" + r(HEX, 40),
         "CIRCLECI_TOKEN={S}")
add_each("buildkite_token", lambda: "bkua_" + r(HEX, 40),
         "buildkite agent token {S}")
add_each("npm_token", lambda: "npm_" + r(ALNUM, 36),
         "//registry.npmjs.org/:_authToken={S}",
         "npm token {S} (automation)")
add_each("pypi_token", lambda: "pypi-AgEIcHlwaS5vcmc" + r(B64URL, 120),
         "twine upload -u __token__ -p {S} dist/*")
add_each("rubygems_token", lambda: "rubygems_" + r(HEX, 48),
         "GEM_HOST_API_KEY={S}")
add_each("nuget_api_key", lambda: "oy2" + r(LO + DIG, 43),
         "dotnet nuget push pkg.nupkg --api-key {S}")
add_each("clojars_token", lambda: "CLOJARS_" + r(LO + DIG, 60),
         "clojars deploy token {S}")
add_each("artifactory_api_key", lambda: "AKCp" + r(ALNUM, 69),
         "X-JFrog-Art-Api: {S}")
add_each("sourcegraph_token", lambda: "sgp_" + r(HEX, 16) + "_" + r(HEX, 40),
         "SRC_ACCESS_TOKEN={S}")
add_each("sonarqube_token", lambda: "squ_" + r(HEX, 40),
         "sonar-scanner -Dsonar.token={S}")
add_each("snyk_token", lambda: f"{r(HEX, 8)}-{r(HEX, 4)}-{r(HEX, 4)}-{r(HEX, 4)}-{r(HEX, 12)}",
         "SNYK_TOKEN={S}")
add_each("postman_api_key", lambda: "PMAK-" + r(HEX, 24) + "-" + r(HEX, 34),
         "postman api key {S}")
add_each("readme_api_key", lambda: "rdme_" + r(LO + DIG, 70),
         "README_API_KEY={S}")
add_each("infracost_api_key", lambda: "ico-" + r(ALNUM, 32),
         "infracost configure set api_key {S}")

# ---- messaging, e-mail, payments ----
add_each("slack_bot_token", lambda: "xoxb-" + r(DIG, 12) + "-" + r(DIG, 13) + "-" + r(ALNUM, 24),
         "SLACK_BOT_TOKEN={S}",
         "the bot posts with {S}")
add_each("slack_webhook", lambda: "T" + r(UP + DIG, 10) + "/B" + r(UP + DIG, 10) + "/" + r(ALNUM, 24),
         "alerts go to https://hooks.slack.com/services/{S}")
add_each("slack_app_token", lambda: "xapp-1-A" + r(UP + DIG, 10) + "-" + r(DIG, 13) + "-" + r(HEX, 64),
         "socket mode needs {S}")
add_each("discord_webhook", lambda: r(B64URL, 68),
         "post to https://discord.com/api/webhooks/1186164976542346248/{S}")
add_each("discord_bot_token", lambda: "MTE4NjE2NDk3NjU0MjM0NjI0OA." + r(B64URL, 6) + "." + r(B64URL, 38),
         "DISCORD_TOKEN={S}")
add_each("telegram_bot_token", lambda: str(R.randint(10**8, 10**10 - 1)) + ":AA" + r(B64URL, 33),
         "BotFather gave me {S}")
add_each("twilio_api_key", lambda: "SK" + r(HEX, 32),
         "twilio api key sid {S}")
add_each("twilio_auth_token", lambda: r(HEX, 32),
         "Twilio account AC" + r(HEX, 32) + " auth token {S}",
         "TWILIO_AUTH_TOKEN={S}",
         "my twilio auth token is {S}")
add_each("sendgrid_api_key", lambda: "SG." + r(B64URL, 22) + "." + r(B64URL, 43),
         "SENDGRID_API_KEY={S}")
add_each("mailgun_api_key", lambda: "key-" + r(HEX, 32),
         "mailgun private key {S}",
         "curl --user 'api:{S}' https://api.mailgun.net/v3/mg.acme.io/messages")
add_each("mailgun_signing_key", lambda: r(HEX, 32) + "-" + r(HEX, 8) + "-" + r(HEX, 8),
         "MAILGUN_WEBHOOK_SIGNING_KEY={S}")
add_each("mailchimp_api_key", lambda: r(HEX, 32) + "-us" + str(R.randint(1, 21)),
         "mailchimp api key {S}")
add_each("brevo_api_key", lambda: "xkeysib-" + r(HEX, 64) + "-" + r(ALNUM, 16),
         "BREVO_API_KEY={S}")
add_each("postmark_server_token", lambda: f"{r(HEX, 8)}-{r(HEX, 4)}-{r(HEX, 4)}-{r(HEX, 4)}-{r(HEX, 12)}",
         "X-Postmark-Server-Token: {S}")
add_each("stripe_secret_key", lambda: "sk_live_" + r(ALNUM, 99),
         "STRIPE_SECRET_KEY={S}",
         "stripe.api_key = '{S}'")
add_each("stripe_restricted_key", lambda: "rk_live_" + r(ALNUM, 99),
         "restricted key for reporting: {S}")
add_each("stripe_webhook_secret", lambda: "whsec_" + r(ALNUM, 32),
         "stripe listen printed your webhook signing secret {S}")
add_each("square_access_token", lambda: "EAAA" + r(B64URL, 60),
         "SQUARE_ACCESS_TOKEN={S}",
         "square production token {S}")
add_each("square_oauth_secret", lambda: "sq0csp-" + r(B64URL, 43),
         "square application secret {S}")
add_each("paypal_braintree_token", lambda: "access_token$production$" + r(LO + DIG, 16) + "$" + r(HEX, 32),
         "braintree gateway access token {S}")
add_each("shopify_access_token", lambda: "shpat_" + r(HEX, 32),
         "X-Shopify-Access-Token: {S}")
add_each("shopify_shared_secret", lambda: "shpss_" + r(HEX, 32),
         "shopify app secret {S}")
add_each("hubspot_private_app_token", lambda: f"pat-na1-{r(HEX, 8)}-{r(HEX, 4)}-{r(HEX, 4)}-{r(HEX, 4)}-{r(HEX, 12)}",
         "HUBSPOT_ACCESS_TOKEN={S}")

# ---- AI providers ----
add_each("openai_api_key", lambda: "sk-proj-" + r(B64URL, 156),
         "OPENAI_API_KEY={S}",
         "use {S} for the eval run")
add_each("anthropic_api_key", lambda: "sk-ant-api03-" + r(B64URL, 93) + "AA",
         "ANTHROPIC_API_KEY={S}",
         "claude key {S}")
add_each("huggingface_token", lambda: "hf_" + r(ALNUM, 34),
         "huggingface-cli login --token {S}")
add_each("groq_api_key", lambda: "gsk_" + r(ALNUM, 52),
         "GROQ_API_KEY={S}")
add_each("replicate_token", lambda: "r8_" + r(ALNUM, 37),
         "REPLICATE_API_TOKEN={S}")
add_each("perplexity_api_key", lambda: "pplx-" + r(ALNUM, 48),
         "perplexity key {S}")
add_each("xai_api_key", lambda: "xai-" + r(ALNUM, 80),
         "XAI_API_KEY={S}")
add_each("langsmith_api_key", lambda: "lsv2_pt_" + r(HEX, 32) + "_" + r(HEX, 10),
         "LANGCHAIN_API_KEY={S}")
add_each("pinecone_api_key", lambda: "pcsk_" + r(ALNUM, 6) + "_" + r(ALNUM, 63),
         "pinecone key {S}")
add_each("cohere_api_key", lambda: r(ALNUM, 40),
         "COHERE_API_KEY={S}")

# ---- observability and SaaS ----
add_each("sentry_dsn", lambda: r(HEX, 32),
         "SENTRY_DSN=https://{S}@o450123.ingest.sentry.io/5512345",
         "sentry_sdk.init(dsn=\"https://{S}@o87286.ingest.us.sentry.io/1234567\")")
add_each("sentry_auth_token", lambda: "sntryu_" + r(HEX, 64),
         "SENTRY_AUTH_TOKEN={S}")
add_each("grafana_cloud_token", lambda: "glc_" + r(ALNUM, 120) + "==",
         "grafana cloud access policy token {S}")
add_each("grafana_service_account_token", lambda: "glsa_" + r(ALNUM, 32) + "_" + r(HEX, 8),
         "GRAFANA_TOKEN={S}",
         "grafana service account token: {S}")
add_each("grafana_api_key", lambda: "eyJrIjoi" + r(ALNUM, 80) + "=",
         "grafana api key {S}")
add_each("datadog_api_key", lambda: r(HEX, 32),
         "DD_API_KEY={S}",
         "datadog api key is {S}")
add_each("new_relic_user_key", lambda: "NRAK-" + r(UP + DIG, 27),
         "NEW_RELIC_API_KEY={S}")
add_each("new_relic_license_key", lambda: r(HEX, 36) + "NRAL",
         "newrelic license_key: {S}")
add_each("dynatrace_token", lambda: "dt0c01." + r(UP + DIG, 24) + "." + r(UP + DIG, 64),
         "Api-Token {S}")
add_each("linear_api_key", lambda: "lin_api_" + r(ALNUM, 40),
         "LINEAR_API_KEY={S}",
         "linear personal key {S}")
add_each("notion_token", lambda: "ntn_" + r(DIG, 11) + r(ALNUM, 35),
         "NOTION_TOKEN={S}")
add_each("airtable_pat", lambda: "pat" + r(ALNUM, 14) + "." + r(HEX, 64),
         "airtable token {S}")
add_each("figma_token", lambda: "figd_" + r(B64URL, 40),
         "X-Figma-Token: {S}")
add_each("okta_api_token", lambda: "00" + r(B64URL, 40),
         "okta api token {S}")
add_each("algolia_admin_key", lambda: r(HEX, 32),
         "ALGOLIA_ADMIN_API_KEY={S}")
add_each("mapbox_secret_token", lambda: "sk.eyJ1Ijoi" + r(B64URL, 40) + "." + r(B64URL, 22),
         "MAPBOX_DOWNLOADS_TOKEN={S}")
add_each("typeform_token", lambda: "tfp_" + r(ALNUM, 59),
         "typeform personal token {S}")
add_each("frameio_token", lambda: "fio-u-" + r(B64URL, 64),
         "frame.io token {S}")
add_each("easypost_key", lambda: "EZAK" + r(ALNUM, 54),
         "easypost production key {S}")
add_each("shippo_token", lambda: "shippo_live_" + r(HEX, 40),
         "SHIPPO_TOKEN={S}")
add_each("age_secret_key", lambda: "AGE-SECRET-KEY-1" + r("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58),
         "# created: 2026-01-01\n# public key: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p\n{S}")
add_each("jwt", lambda: jwt_like({"sub": "1234567890", "name": "svc-billing", "iat": 1767225600}),
         "session cookie was {S}")

# ---- generic credentials ----
add_each("private_key_pem", lambda: "-----BEGIN OPENSSH PRIVATE KEY-----\n" + r(B64, 70) + "\n" + r(B64, 70) + "\n-----END OPENSSH PRIVATE KEY-----",
         "cat ~/.ssh/id_ed25519\n{S}\n")
add_each("pgp_private_key", lambda: "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n" + r(B64, 64) + "\n" + r(B64, 30) + "\n-----END PGP PRIVATE KEY BLOCK-----",
         "exported with gpg --armor --export-secret-keys:\n{S}")
add_each("url_password_hash_bang", lambda: "Tr0ub4dor#" + r(ALNUM, 4) + "!x",
         "DATABASE_URL=postgres://app:{S}@db.internal:5432/app",
         "mongodb+srv://admin:{S}@cluster0.ab1cd.mongodb.net/test")
add_each("url_password", lambda: r(ALNUM, 14),
         "redis://default:{S}@redis-12345.c1.us-east-1.ec2.cloud.redislabs.com:12345",
         "amqp://guest:{S}@rabbit:5672/")
add_each("env_secret_key", lambda: "django-insecure-" + r(LO + DIG + "!@#%^*(-_=+", 50),
         "SECRET_KEY={S}")
add_each("env_secret_key", lambda: r(LO, 26),
         "SESSION_SECRET={S}",
         "JWT_SECRET={S}")
add_each("env_secret_key", lambda: r(HEX, 64),
         "RAILS_MASTER_KEY={S}")
add_each("password_assignment", lambda: r(LO, 4) + r(DIG, 3) + "!" + r(UP, 2),
         "DB_PASSWORD={S}",
         'spring.datasource.password={S}',
         "mysql -u root --password={S} acme")
add_each("password_in_prose", lambda: r(ALNUM, 10) + r(DIG, 2),
         "the wifi password is {S}",
         "root password for the NAS: {S}")
add_each("basic_auth_header", lambda: base64.b64encode(("svc:" + r(ALNUM, 16)).encode()).decode(),
         "Authorization: Basic {S}")
add_each("curl_user_password", lambda: r(ALNUM, 12) + "7",
         "curl -u admin:{S} https://jenkins.acme.internal/api/json")
add_each("bearer_token", lambda: r(B64URL, 48),
         "Authorization: Bearer {S}")
add_each("htpasswd_hash", lambda: "$apr1$" + r(ALNUM, 8) + "$" + r(ALNUM + "./", 22),
         "htpasswd line admin:{S}")


# ---- the same kinds in other containers: YAML, TOML, JSON, headers, shell history ----
add_each("github_pat", lambda: "ghp_" + r(ALNUM, 36),
         "  github:\n    token: {S}\n    org: acme",
         '[auth]\ntoken = "{S}"')
add_each("openai_api_key", lambda: "sk-proj-" + r(B64URL, 156),
         '{"model": "gpt-4o", "api_key": "{S}"}')
add_each("stripe_secret_key", lambda: "sk_test_" + r(ALNUM, 99),
         "Stripe::API.key = \"{S}\"")
add_each("slack_bot_token", lambda: "xoxb-" + r(DIG, 12) + "-" + r(DIG, 13) + "-" + r(ALNUM, 24),
         "client = WebClient(token=\"{S}\")")
add_each("password_assignment", lambda: r(UP, 1) + r(LO, 6) + r(DIG, 2) + "$",
         "  password: \"{S}\"\n  username: deploy",
         "PGPASSWORD='{S}' psql -h db -U app",
         "ansible_become_pass: {S}")
add_each("password_in_prose", lambda: r(LO, 5) + r(DIG, 4) + "!",
         "The admin password is {S} until we set up SSO.",
         "staging login: admin / password {S}",
         "new wifi passphrase: {S}")
add_each("url_password", lambda: r(ALNUM, 10) + "!" + r(DIG, 2),
         "psql 'postgresql://report:{S}@10.0.3.7/analytics?sslmode=require'",
         "spring.datasource.url=jdbc:mysql://app:{S}@mysql:3306/app")
add_each("jwt", lambda: jwt_like({"sub": "user_42", "role": "admin", "exp": 1767225600}),
         "Authorization: Bearer {S}",
         "localStorage.setItem('id_token', '{S}')")
add_each("aws_secret_access_key", lambda: r(B64, 40),
         '{"AccessKeyId": "ASIA' + r(B32, 16) + '", "SecretAccessKey": "{S}", "SessionToken": "FwoGZX"}')
add_each("gcp_api_key", lambda: "AIza" + r(B64URL, 35),
         "firebaseConfig = { apiKey: \"{S}\", authDomain: \"acme.firebaseapp.com\" }")
add_each("huggingface_token", lambda: "hf_" + r(ALNUM, 34),
         "HF_TOKEN={S} python train.py")
add_each("anthropic_api_key", lambda: "sk-ant-api03-" + r(B64URL, 93) + "AA",
         "client = anthropic.Anthropic(api_key=\"{S}\")")
add_each("sendgrid_api_key", lambda: "SG." + r(B64URL, 22) + "." + r(B64URL, 43),
         "sg = SendGridAPIClient('{S}')")
add_each("generic_api_key", lambda: r(ALNUM, 32),
         "X-API-Key: {S}",
         "api_key = \"{S}\"",
         "headers = {'x-api-key': '{S}'}")
add_each("generic_client_secret", lambda: r(ALNUM + "-_", 40),
         "client_secret: {S}",
         "OAUTH_CLIENT_SECRET={S}")
add_each("private_key_pem", lambda: "-----BEGIN RSA PRIVATE KEY-----\n" + r(B64, 64) + "\n" + r(B64, 64) + "\n" + r(B64, 20) + "==\n-----END RSA PRIVATE KEY-----",
         "here is the key for the bastion:\n{S}")
add_each("private_key_pem", lambda: "-----BEGIN EC PRIVATE KEY-----\n" + r(B64, 64) + "\n" + r(B64, 40) + "\n-----END EC PRIVATE KEY-----",
         "tls.key: |\n{S}")

# ---- PII (pii option) ----
for brand, prefix, length, sizes in [
    ("visa", "4", 16, (4, 4, 4, 4)), ("visa", "4", 16, (16,)), ("mastercard", "5", 16, (4, 4, 4, 4)),
    ("mastercard", "22", 16, (4, 4, 4, 4)), ("amex", "37", 15, (4, 6, 5)), ("amex", "34", 15, (15,)),
    ("discover", "6011", 16, (4, 4, 4, 4)), ("jcb", "3540", 16, (4, 4, 4, 4)), ("diners", "36", 14, (4, 6, 4)),
    ("unionpay", "62", 16, (16,)),
]:
    num = luhn_complete(prefix if brand != "mastercard" or prefix != "5" else "5" + str(R.randint(1, 5)), length)
    assert luhn_ok(num)
    sep = "-" if R.random() < 0.3 else " "
    s = group(num, sizes, sep)
    t = R.choice([
        "customer paid with card {S}, exp 09/28",
        "card number: {S}",
        "refund to {S} failed",
        "her {B} is {S}",
    ]).replace("{B}", brand)
    SECRETS.append({"kind": "payment_card", "text": t.replace("{S}", s), "secret": s})
for t in ["SSN {S} on the W-2", "employee social security number: {S}", "his ssn is {S}", "applicant {S}, DOB 1988-04-12"]:
    s = ssn()
    SECRETS.append({"kind": "us_ssn", "text": t.replace("{S}", s), "secret": s})
for t, s in [
    ("ping Alice at {S} about the invoice", "alice.nguyen@acme-corp.com"),
    ("my email is {S}", "j.smith+newsletter@gmail.com"),
    ("From: {S}", "karl.heinz@posteo.de"),
    ("send the report to {S}.", "ops-team@subcog.dev"),
]:
    SECRETS.append({"kind": "email", "text": t.replace("{S}", s), "secret": s})
for t, s in [
    ("call me on {S} after six", "+1 415 555 2671"),
    ("her mobile is {S}", "+44 7700 900123"),
    ("support line (US): {S}", "(212) 555-0187"),
    ("phone: {S}", "030 1234567"),
    ("text {S} for the door code", "646-555-0142"),
    ("WhatsApp {S}", "+49 151 23456789"),
]:
    SECRETS.append({"kind": "phone_number", "text": t.replace("{S}", s), "secret": s})

# ---- ordinary developer sentences: nothing in them may change ----
CLEAN = []


def uuid():
    return f"{r(HEX, 8)}-{r(HEX, 4)}-4{r(HEX, 3)}-{R.choice('89ab')}{r(HEX, 3)}-{r(HEX, 12)}"


def not_luhn(prefix, length):
    while True:
        n = prefix + r(DIG, length - len(prefix))
        if not luhn_ok(n):
            return n


def bad_ssn():
    return R.choice([
        f"000-{R.randint(1, 99):02d}-{R.randint(1, 9999):04d}",
        f"666-{R.randint(1, 99):02d}-{R.randint(1, 9999):04d}",
        f"9{R.randint(0, 99):02d}-{R.randint(1, 99):02d}-{R.randint(1, 9999):04d}",
        f"{R.randint(1, 899):03d}-00-{R.randint(1, 9999):04d}",
        f"{R.randint(1, 665):03d}-{R.randint(1, 99):02d}-0000",
    ])


WORDS = ("user session cache request handler config index vector memory table shard replica "
         "worker queue batch stream parser token_count embedding namespace snapshot").split()
B64_PHRASES = ["hello world", "the quick brown fox", "{\"type\":\"note\",\"id\":42}", "subcog memory dump v2",
               "Lorem ipsum dolor sit amet", "PNG image data, 1 x 1", "user=anonymous;role=guest"]
TEMPLATES = [
    lambda: f"fixed in commit {r(HEX, 40)}",
    lambda: f"git cherry-pick {r(HEX, 7)} {r(HEX, 7)}",
    lambda: f"merged {r(HEX, 12)} into main after review",
    lambda: f"sha256sum of the tarball: {r(HEX, 64)}",
    lambda: f"docker pull ghcr.io/acme/api@sha256:{r(HEX, 64)}",
    lambda: f"request id {uuid()} timed out after 30s",
    lambda: f"trace_id={r(HEX, 32)} span_id={r(HEX, 16)}",
    lambda: f"the row with id {uuid()} is a duplicate of {uuid()}",
    lambda: f"the fixture is base64: {base64.b64encode(R.choice(B64_PHRASES).encode()).decode()}",
    lambda: f"echo {base64.b64encode(R.choice(B64_PHRASES).encode()).decode()} | base64 -d",
    lambda: f"bumped serde to {R.randint(0, 2)}.{R.randint(0, 250)}.{R.randint(0, 40)} and tokio to 1.{R.randint(20, 45)}.{R.randint(0, 9)}",
    lambda: f"release v{R.randint(0, 9)}.{R.randint(0, 30)}.{R.randint(0, 30)}-rc.{R.randint(1, 5)}+build.{R.randint(100, 9999)}",
    lambda: f"python {R.randint(3, 3)}.{R.randint(8, 13)}.{R.randint(0, 12)} on ubuntu 24.04",
    lambda: f"see /home/{R.choice(['bob', 'alice', 'ci'])}/src/{R.choice(WORDS)}/target/release/libsubcog.so",
    lambda: f"moved src/{R.choice(WORDS)}/{R.choice(WORDS)}.rs to src/store/{R.choice(WORDS)}.rs",
    lambda: f"C:\\Users\\{R.choice(['bob', 'Alice'])}\\AppData\\Local\\subcog\\model-{R.randint(1, 9)}.onnx",
    lambda: f"the button colour is #{r(HEX, 6)} on hover and #{r(HEX, 3)} otherwise",
    lambda: f"rgba({R.randint(0, 255)}, {R.randint(0, 255)}, {R.randint(0, 255)}, 0.{R.randint(1, 9)}) for the overlay",
    lambda: f"renamed {'_'.join(R.sample(WORDS, 4))} to {'_'.join(R.sample(WORDS, 3))}",
    lambda: f"{''.join(w.capitalize() for w in R.sample(WORDS, 5))}Factory is deprecated",
    lambda: f"docs at https://docs.rs/{R.choice(WORDS)}/{R.randint(0, 3)}.{R.randint(0, 20)}.{R.randint(0, 9)}/{R.choice(WORDS)}/index.html",
    lambda: f"open https://github.com/acme/{R.choice(WORDS)}/pull/{R.randint(1, 9999)}#issuecomment-{R.randint(10**8, 10**9)}",
    lambda: f"GET https://api.acme.io/v2/{R.choice(WORDS)}?page={R.randint(1, 50)}&per_page=100&sort=created returned 200",
    lambda: f"listening on http://127.0.0.1:{R.randint(1024, 65535)}/ and http://[::1]:{R.randint(1024, 65535)}/",
    lambda: f"p50 {R.randint(1, 99)}.{R.randint(0, 9)} ms, p99 {R.randint(100, 999)}.{R.randint(0, 9)} ms over {R.randint(1000, 99999)} queries",
    lambda: f"recall@10 = 0.{R.randint(800, 999)} at ef_search={R.choice([16, 32, 64, 128])}",
    lambda: f"the table has {R.randint(10**5, 10**8)} rows and {R.randint(1, 64)} shards",
    lambda: f"order #{R.randint(10**6, 10**9)} shipped on {R.randint(2019, 2026)}-{R.randint(1, 12):02d}-{R.randint(1, 28):02d}",
    lambda: f"started at {R.randint(2019, 2026)}-{R.randint(1, 12):02d}-{R.randint(1, 28):02d}T{R.randint(0, 23):02d}:{R.randint(0, 59):02d}:{R.randint(0, 59):02d}Z, took {R.randint(1, 999)}s",
    lambda: f"timestamp {R.randint(1_600_000_000_000, 1_800_000_000_000)} ms since epoch",
    lambda: f"Discord channel {R.randint(10**17, 2 * 10**18)} and message {R.randint(10**17, 2 * 10**18)}",
    lambda: f"invoice {not_luhn('4', 16)} is not a card number",
    lambda: f"batch id {not_luhn(R.choice(['5', '37', '6011']), 16)}",
    lambda: f"legacy ids look like {bad_ssn()} in the old system",
    lambda: f"ISBN 978-{R.randint(0, 9)}-{R.randint(10, 99)}-{R.randint(100000, 999999)}-{R.randint(0, 9)}",
    lambda: f"ports {R.randint(1000, 2000)}-{R.randint(3000, 9000)} are open; range {R.randint(10, 99)}-{R.randint(100, 999)}-{R.randint(1000, 9999)} reserved",
    lambda: f"ip {R.randint(10, 192)}.{R.randint(0, 255)}.{R.randint(0, 255)}.{R.randint(1, 254)} and mask 255.255.255.0",
    lambda: f"IPv6 fe80::{r(HEX, 4)}:{r(HEX, 4)}:{r(HEX, 4)}:{r(HEX, 4)}",
    lambda: f"MAC {':'.join(r(HEX, 2) for _ in range(6))}",
    lambda: f"npm i lodash@4.17.{R.randint(10, 21)} @types/node@{R.randint(18, 22)}.{R.randint(0, 9)}.{R.randint(0, 9)}",
    lambda: f"git remote add origin git@github.com:acme/{R.choice(WORDS)}.git",
    lambda: f"ssh deploy@build{R.randint(1, 9)}.acme.internal 'systemctl restart {R.choice(WORDS)}'",
    lambda: f"integrity sha512-{base64.b64encode(bytes(R.randrange(256) for _ in range(48))).decode()} in package-lock.json",
    lambda: f"the fingerprint is SHA256:{base64.b64encode(bytes(R.randrange(256) for _ in range(32))).decode().rstrip('=')}",
    lambda: f"token_count = {R.randint(1, 8192)}; max_tokens = {R.choice([256, 512, 1024, 4096])}",
    lambda: f"let {R.choice(WORDS)}_key = format!(\"{{}}:{{}}\", ns, id);",
    lambda: f"the cache key is {R.choice(WORDS)}:{R.randint(1, 10**6)}:{R.choice(WORDS)}",
    lambda: f"primary key (namespace, id) with {R.randint(2, 9)} columns",
    lambda: f"password = os.environ['{R.choice(['DB', 'PG', 'APP'])}_PASSWORD']",
    lambda: f"secret_name = \"{R.choice(WORDS)}-{R.choice(WORDS)}\"",
    lambda: f"the {R.choice(['api', 'auth', 'access'])} token is read from $TOKEN_FILE at startup",
    lambda: f"set {R.choice(['GITHUB_TOKEN', 'OPENAI_API_KEY', 'DB_PASSWORD'])} in the CI secrets, never in the repo",
    lambda: f"export PATH=$HOME/.cargo/bin:$PATH; export RUST_LOG={R.choice(['debug', 'info', 'subcog=trace'])}",
    lambda: f"ENV {R.choice(['NODE_ENV', 'APP_ENV'])}=production and PORT={R.randint(3000, 9000)}",
    lambda: f"cargo test --release -- --test-threads={R.randint(1, 8)} --nocapture",
    lambda: f"the model is all-MiniLM-L6-v2 with {R.choice([384, 768])} dims and {R.randint(6, 12)} layers",
    lambda: f"tensor shape [{R.randint(1, 64)}, {R.randint(1, 512)}, 384] dtype float32",
    lambda: f"vector [{R.random():.4f}, {R.random():.4f}, {R.random():.4f}, {R.random():.4f}]",
    lambda: f"version string {R.randint(1, 9)}.{R.randint(0, 9)}.{R.randint(0, 9)}.{R.randint(1000, 9999)} from the build server",
    lambda: f"build 2026{R.randint(1, 12):02d}{R.randint(1, 28):02d}.{R.randint(1, 99)} passed {R.randint(100, 2000)} tests",
    lambda: f"S3 object s3://acme-{R.choice(WORDS)}/2026/{R.randint(1, 12):02d}/{r(HEX, 16)}.parquet",
    lambda: f"arn:aws:iam::{r(DIG, 12)}:role/{R.choice(WORDS)}-runner",
    lambda: f"the aws account id is {r(DIG, 12)} in region eu-west-{R.randint(1, 3)}",
    lambda: f"k8s pod {R.choice(WORDS)}-{r(LO + DIG, 10)}-{r(LO + DIG, 5)} is CrashLoopBackOff",
    lambda: "jwt header eyJhbGciOiJSUzI1NiJ9 only, no payload",
    lambda: f"ssh-keygen -l printed MD5:{':'.join(r(HEX, 2) for _ in range(16))}",
    lambda: f"UTM coordinates 32U {R.randint(100000, 999999)} {R.randint(1000000, 9999999)}",
    lambda: f"sqlite3 memories.db 'SELECT count(*) FROM mem WHERE id > {R.randint(1, 10**6)}'",
    lambda: f"lat {R.uniform(-90, 90):.6f}, lon {R.uniform(-180, 180):.6f}",
    lambda: f"price went from ${R.randint(1, 999)}.{R.randint(0, 99):02d} to ${R.randint(1, 999)}.{R.randint(0, 99):02d}",
    lambda: f"the {R.choice(WORDS)} benchmark ran {R.randint(2, 99)} times: {R.randint(1000, 99999)} ns/op",
    lambda: f"error E{R.randint(1000, 9999)}: mismatched types at src/{R.choice(WORDS)}.rs:{R.randint(1, 999)}:{R.randint(1, 99)}",
    lambda: f"Traceback: File \"/usr/lib/python3.{R.randint(8, 12)}/site-packages/{R.choice(WORDS)}/core.py\", line {R.randint(1, 2000)}",
    lambda: f"the regex ^[A-Za-z0-9_]{{{R.randint(8, 64)}}}$ matches identifiers",
    lambda: f"meeting moved to {R.randint(1, 12)}:{R.choice(['00', '15', '30', '45'])} {R.choice(['am', 'pm'])} on {R.choice(['Monday', 'Tuesday', 'Friday'])}",
    lambda: f"we agreed on {R.randint(2, 30)} story points for sprint {R.randint(1, 99)}",
    lambda: f"Melanie's daughter turns {R.randint(3, 17)} on the {R.randint(1, 28)}th",
    lambda: f"the PR title is 'Fix {'-'.join(R.sample(WORDS, 3))} race in flush'",
    lambda: f"the secret to fast inserts is batching {R.randint(100, 10000)} rows per transaction",
    lambda: f"bearer of the {R.choice(['ring', 'news', 'flag'])} since {R.randint(1990, 2025)}",
    lambda: f"the tokenizer splits {r(LO, 12)} into {R.randint(2, 6)} word pieces",
    lambda: f"frame {R.randint(0, 99)}: 0x{r(HEX, 16)} in subcog::table::write::insert",
    lambda: f"ULID {r('0123456789ABCDEFGHJKMNPQRSTVWXYZ', 26)} sorts by time",
    lambda: f"nanoid {r(B64URL, 21)} for the short link",
    lambda: f"the content hash is xxh3:{r(HEX, 16)} and blake3:{r(HEX, 64)}",
    lambda: f"IBAN-like test value {r(UP, 2)}{r(DIG, 2)} is not validated here",
    lambda: f"sprint {R.randint(1, 52)} retro: {R.randint(1, 9)} bugs, {R.randint(1, 30)} PRs, {R.randint(0, 5)} incidents",
]
for i in range(560):
    CLEAN.append({"text": TEMPLATES[i % len(TEMPLATES)]()})


# Hand-written sentences that talk about secrets, keys, passwords, numbers and addresses
# without holding any.
HARD_CLEAN = [
    "the token is stored in the macOS keychain, never on disk",
    "rotate the API key every 90 days and revoke the old one",
    "password: ********",
    "api_key: ${OPENAI_API_KEY}",
    "token: {{ secrets.GITHUB_TOKEN }}",
    "GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}",
    "export OPENAI_API_KEY=\"$(op read op://dev/openai/key)\"",
    "SECRET_KEY=${DJANGO_SECRET_KEY}",
    "DB_PASSWORD=",
    "the password field is hashed with argon2id before it is stored",
    "the user forgot their password and asked for a reset link",
    "passwords must be 12+ characters and contain a digit",
    "Password reset tokens expire after 15 minutes",
    "the bearer token goes in the Authorization header",
    "Authorization: Bearer <token>",
    "curl -H \"Authorization: Bearer $TOKEN\" https://api.acme.io/v1/me",
    "curl -u \"$USER:$PASS\" https://jenkins.acme.internal/api/json",
    "mysql -u root -p acme < dump.sql",
    "psql postgresql://report@10.0.3.7/analytics?sslmode=require",
    "postgres://app@db.internal:5432/app has no password, it uses peer auth",
    "redis://localhost:6379/0 is the default",
    "the JWT has three parts: header, payload and signature",
    "tokens are counted with tiktoken: 1,024 tokens per chunk",
    "we hit the max_tokens limit of 4096 on the summary call",
    "the tokenizer's vocab has 30522 word pieces",
    "secret sauce: batching inserts in one transaction",
    "Keep it secret, keep it safe.",
    "the secret santa draw is on Friday",
    "our primary key is (namespace, id) and the foreign key points to users.id",
    "the cache key is built from the namespace and the content hash",
    "the private key never leaves the HSM",
    "public key: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
    "ssh-keygen -t ed25519 -C \"deploy key for the CI\"",
    "the access key id must start with AKIA or ASIA",
    "client_id: 1234567890-abc.apps.googleusercontent.com",
    "the webhook URL is https://hooks.example.com/incoming/deploys",
    "use the --token flag or the SUBCOG_TOKEN variable",
    "cargo publish --token is deprecated, use cargo login",
    "pass --password-stdin to docker login instead of -p",
    "--api-key is required for the hosted endpoint",
    "git push --force-with-lease origin main",
    "the auth header is missing on the retry path",
    "token_type: bearer, expires_in: 3600",
    "grant_type=client_credentials&scope=read",
    "the session id cookie is HttpOnly and SameSite=Lax",
    "the password hash column is 60 chars for bcrypt",
    "keys are rotated by the KMS every year",
    "the license key field is optional for the community edition",
    "master key rotation is scheduled for Q3",
    "set auth_key_id in the config to the key's uuid",
    "the secret manager path is projects/acme/secrets/db-password/versions/latest",
    "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf",
    "vault kv get -field=password secret/db",
    "kubectl create secret generic db --from-literal=password=$DB_PASSWORD",
    "kubectl get secret db -o jsonpath='{.data.password}' | base64 -d",
    "the docker config has an auths section for ghcr.io",
    "the Sentry DSN is read from SENTRY_DSN at startup",
    "the Twilio account SID starts with AC",
    "the card ends in 4242 and expires 12/27",
    "we accept Visa, Mastercard and Amex",
    "the SSN field is masked as ***-**-1234 in the UI",
    "call the API at most 10 times per second",
    "phone support is open 9 to 5 CET",
    "the phone number column is E.164 formatted",
    "email me the logs once the job finishes",
    "the e-mail template lives in templates/welcome.html",
    "@alice please review, cc @bob",
    "decorate the handler with @app.route('/health')",
    "import { Component } from '@angular/core'",
    "pip install 'requests>=2.31,<3' 'numpy==1.26.4'",
    "the release is tagged v2.14.0 and v2.14.0-rc.2",
    "build 2026.03.14.1207 failed on arm64",
    "the build number 20260314120701 is monotonic",
    "ticket JIRA-4821 is blocked by OPS-112",
    "see RFC 7519 section 4.1 for the registered claims",
    "CVE-2024-3094 affected xz 5.6.0 and 5.6.1",
    "the order total was 1234.56 EUR and shipping 4.99 EUR",
    "between 2024-01-01 and 2024-12-31 we stored 1,234,567 memories",
    "the latency histogram buckets are 1, 2, 5, 10, 20, 50 ms",
    "the HNSW graph has M=16 and ef_construction=200",
    "pi is 3.14159265358979 and e is 2.71828182845904",
    "the checksum 4111111111111112 does not match",
    "order 5555555555554445 was cancelled",
    "the Unix time 1767225600 is 2026-01-01",
    "bitmask 0xFFFF0000 and offset 0x7ffd5c3a9e10",
    "colours: #ff6600, #0a0a0a, rgb(12, 34, 56), hsl(210, 50%, 40%)",
    "font-size: 14px; line-height: 1.5; margin: 0 auto",
    "the UUID v7 0190f2a4-7c1e-7b3a-9f2d-3c4b5a697887 sorts by time",
    "the correlation id is 7d9f8e6c5b4a39281706f5e4d3c2b1a0",
    "git log --oneline shows 3f2a9b1 and 8c7d6e5",
    "the image digest is sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
    "the ETag is W/\"5e15153d-120f\"",
    "the S3 key is uploads/2026/01/avatar-8f14e45f.png",
    "the Base64 of 'subcog' is c3ViY29n",
    "data:text/plain;base64,SGVsbG8sIFdvcmxkIQ==",
    "the PNG starts with iVBORw0KGgo",
    "the locale is en_US.UTF-8 and the timezone Europe/Berlin",
    "the lat/long is 52.520008, 13.404954",
    "the build ran on runner-7f9c4b2d-x86-64 in 4m 12s",
    "the pod is api-5d8f7c9b6-xk2lp in namespace prod",
    "the function get_access_token_for_service_account is too long",
    "rename AuthTokenProviderFactoryImpl to TokenSource",
    "the env var is SUBCOG_EMBED_THREADS=4",
    "NODE_OPTIONS=--max-old-space-size=4096",
    "JAVA_OPTS=-Xmx2g -XX:+UseG1GC",
    "PATH=/usr/local/bin:/usr/bin:/bin",
    "HOME=/home/bob and SHELL=/bin/zsh",
    "PASSWORD_MIN_LENGTH=12 and TOKEN_TTL=3600",
    "MAX_TOKENS=4096 TOKENIZER=cl100k_base",
    "AUTH_TOKEN_HEADER=X-Auth-Token",
    "the password policy: PASSWORD_REQUIRE_DIGIT=true",
    "SECRET_KEY_FILE=/run/secrets/django_key",
    "API_KEY_HEADER=X-Api-Key",
    "my password manager is Bitwarden",
    "I changed my password yesterday, the old one leaked",
    "the token bucket refills at 10 tokens per second",
    "he is the bearer of the flag at the opening ceremony",
    "the secret is to preheat the oven to 220 degrees",
    "Caroline said the key to the garden shed is under the pot",
    "Melanie's phone died so she called from the hotel",
    "my email was down all morning",
    "the meeting is at 10:30 in room 4.12",
    "the train leaves at 17:45 from platform 9",
    "the flight number is LH 2034, seat 14C",
    "the parcel tracking number is 1Z999AA10123456784",
    "the IBAN field is validated with mod 97",
    "ISBN 978-0-306-40615-7 is a valid check digit example",
    "the postcode is 10115 Berlin",
    "the room is 212 and the extension is 5550",
    "version 10.0.19045.3803 of Windows",
    "IP 203.0.113.45 is in the TEST-NET-3 range",
    "the subnet 10.20.30.0/24 has 254 hosts",
    "port 5432/tcp is open on 172.16.0.12",
]
for t in HARD_CLEAN:
    CLEAN.append({"text": t})

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "secrets.jsonl"), "w") as f:
    for row in SECRETS:
        assert row["secret"] in row["text"], row
        f.write(json.dumps(row) + "\n")
with open(os.path.join(here, "clean.jsonl"), "w") as f:
    for row in CLEAN:
        f.write(json.dumps(row) + "\n")
kinds = {row["kind"] for row in SECRETS}
print(f"{len(SECRETS)} secrets of {len(kinds)} kinds, {len(CLEAN)} clean sentences")
