//! First start: create the first tenant, its admin and an API key, and write the credentials to
//! `data_dir/bootstrap.env` (mode 0600) so the operator can sign in. Also: the token secret, generated once.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};

use kefu_api::auth::{hash_password, new_api_key, random_secret};
use kefu_store::{NewApiKey, NewStaffUser, NewTenant, StaffRole, Store};

use crate::settings::BootstrapSettings;

/// Credentials of a newly created tenant.
#[derive(Debug)]
pub struct CreatedTenant {
    pub slug: String,
    pub admin_email: String,
    pub admin_password: SecretString,
    pub api_key: SecretString,
}

/// Creates a tenant with an admin user and an API key.
pub async fn create_tenant(
    store: &dyn Store,
    slug: &str,
    name: &str,
    admin_email: &str,
    admin_password: Option<&SecretString>,
) -> anyhow::Result<CreatedTenant> {
    let tenant = store
        .create_tenant(NewTenant {
            slug: slug.to_owned(),
            name: name.to_owned(),
            customer_secret: random_secret(),
        })
        .await
        .with_context(|| format!("creating tenant {slug:?}"))?;
    let password = admin_password
        .map(|p| p.expose_secret().to_owned())
        .unwrap_or_else(|| random_secret()[..20].to_owned());
    let pw = password.clone();
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&pw)).await?;
    store
        .create_staff(NewStaffUser {
            tenant_id: tenant.id,
            email: admin_email.trim().to_lowercase(),
            display_name: Some("Administrator".into()),
            role: StaffRole::Admin,
            password_hash,
            teams: vec![],
        })
        .await?;
    let (secret, prefix, key_hash) = new_api_key();
    store
        .create_api_key(NewApiKey {
            tenant_id: tenant.id,
            name: "bootstrap".into(),
            prefix,
            key_hash,
        })
        .await?;
    Ok(CreatedTenant {
        slug: tenant.slug,
        admin_email: admin_email.to_owned(),
        admin_password: password.into(),
        api_key: secret.into(),
    })
}

/// The demo's agent account (role agent), created with the first tenant when the demo is on.
pub const DEMO_AGENT_EMAIL: &str = "agent@demo.kefu";

/// Creates the first tenant when there is none (and, for the demo, an agent account to try the desk with).
/// Returns the credentials file written, if any.
pub async fn first_start(
    store: &dyn Store,
    b: &BootstrapSettings,
    data_dir: &Path,
    demo: bool,
) -> anyhow::Result<Option<std::path::PathBuf>> {
    if store.count_tenants().await? > 0 {
        return Ok(None);
    }
    let created = create_tenant(
        store,
        &b.tenant_slug,
        &b.tenant_name,
        &b.admin_email,
        b.admin_password.as_ref(),
    )
    .await?;
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join("bootstrap.env");
    let mut body = format!(
        "# kefu first-start credentials. Keep this file private; `source` it for the README's curl tour.\n\
         KEFU_TENANT={}\nKEFU_ADMIN_EMAIL={}\nKEFU_ADMIN_PASSWORD={}\nKEFU_API_KEY={}\n",
        created.slug,
        created.admin_email,
        created.admin_password.expose_secret(),
        created.api_key.expose_secret()
    );
    if demo {
        let tenant = store
            .get_tenant_by_slug(&created.slug)
            .await?
            .context("the tenant just created")?;
        let password = random_secret()[..12].to_owned();
        let pw = password.clone();
        let password_hash = tokio::task::spawn_blocking(move || hash_password(&pw)).await?;
        store
            .create_staff(NewStaffUser {
                tenant_id: tenant.id,
                email: DEMO_AGENT_EMAIL.into(),
                display_name: Some("小王 Wang".into()),
                role: StaffRole::Agent,
                password_hash,
                teams: vec![],
            })
            .await?;
        body.push_str(&format!(
            "KEFU_DEMO_AGENT_EMAIL={DEMO_AGENT_EMAIL}\nKEFU_DEMO_AGENT_PASSWORD={password}\n"
        ));
    }
    write_private(&path, &body)?;
    Ok(Some(path))
}

/// The token-signing secret: configured, or generated once into `data_dir/jwt.secret`.
pub fn jwt_secret(configured: Option<&SecretString>, data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    if let Some(s) = configured {
        anyhow::ensure!(
            s.expose_secret().len() >= 32,
            "auth.jwt_secret must be at least 32 characters"
        );
        return Ok(s.expose_secret().as_bytes().to_vec());
    }
    let path = data_dir.join("jwt.secret");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_owned();
        anyhow::ensure!(
            existing.len() >= 32,
            "{} is too short; delete it to regenerate",
            path.display()
        );
        return Ok(existing.into_bytes());
    }
    std::fs::create_dir_all(data_dir)?;
    let secret = random_secret();
    write_private(&path, &secret)?;
    Ok(secret.into_bytes())
}

fn write_private(path: &Path, body: &str) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(body.as_bytes())?;
    Ok(())
}
