// HubSpot's official Node SDK (@hubspot/api-client) against the local HubSpot, unchanged
// except for its basePath. Prints one JSON object with what each OAuth call returned.
// Env: HUBSPOT_SDK (path of the installed package), BASE_URL, CODE, CLIENT_ID,
// CLIENT_SECRET, REDIRECT_URI.
'use strict';
const hubspot = require(process.env.HUBSPOT_SDK);

async function main() {
  const env = process.env;
  const client = new hubspot.Client({ basePath: env.BASE_URL });
  const out = {};
  const created = await client.oauth.tokensApi.create(
    'authorization_code', env.CODE, env.REDIRECT_URI, env.CLIENT_ID, env.CLIENT_SECRET);
  out.exchange = created;
  const refreshed = await client.oauth.tokensApi.create(
    'refresh_token', undefined, undefined, env.CLIENT_ID, env.CLIENT_SECRET,
    created.refreshToken);
  out.refresh = refreshed;
  out.accessInfo = await client.oauth.accessTokensApi.get(refreshed.accessToken);
  out.refreshInfo = await client.oauth.refreshTokensApi.get(created.refreshToken);
  await client.oauth.refreshTokensApi.archive(created.refreshToken);
  try {
    await client.oauth.tokensApi.create(
      'refresh_token', undefined, undefined, env.CLIENT_ID, env.CLIENT_SECRET,
      created.refreshToken);
    out.afterArchive = 'unexpected success';
  } catch (err) {
    out.afterArchive = { code: err.code, body: err.body };
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err));
  process.exit(1);
});
