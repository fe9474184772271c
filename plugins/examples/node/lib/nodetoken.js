'use strict';
// The nodetoken provider: presents a bearer token the admin stores for the mailbox (one issued by
// another system) with SASL XOAUTH2 or OAUTHBEARER, until an optional expiry after which it
// refuses with "invalid credentials" and tells the admin to store a new one.

const crypto = require('node:crypto');

const { ProviderError, Reason, logger, timestamp } = require('./authplugin');
const { version } = require('../package.json');

const MECHANISMS = ['XOAUTH2', 'OAUTHBEARER'];
const WARN_BEFORE_MS = 7 * 24 * 3600 * 1000; // a token expiring within a week shows a warning

// RFC 3339 with a zone, e.g. 2027-01-31T00:00:00Z or 2027-01-31T01:00:00+01:00.
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;

function describe() {
  return {
    name: 'nodetoken',
    version,
    display_name: 'Stored bearer token (Node example)',
    description: 'Presents a bearer token stored for the mailbox. An example of a provider written in Node.js.',
    fields: [
      { name: 'token', label: 'Bearer token', type: 'FIELD_TYPE_STRING', required: true, secret: true,
        help: 'The access token to present to the mail server.' },
      { name: 'mechanism', label: 'SASL mechanism', type: 'FIELD_TYPE_ENUM', options: MECHANISMS, default_value: 'XOAUTH2',
        help: 'How the token is presented.' },
      { name: 'lifetime_seconds', label: 'Reuse for (seconds)', type: 'FIELD_TYPE_INT',
        help: 'How long the server may reuse the token before asking again. Empty: until the mail server refuses it.' },
      { name: 'not_after', label: 'Token expires', type: 'FIELD_TYPE_STRING',
        help: 'When the token stops being valid (RFC 3339, e.g. 2027-01-31T00:00:00Z). After it, store a new token.' },
    ],
    sasl_mechanisms: MECHANISMS,
    protocols: ['imap', 'pop3', 'smtp'],
  };
}

// validateConfig returns the bad fields, each named as in describe(); empty when valid.
function validateConfig(account) {
  const violations = [];
  const bad = (field, description) => violations.push({ field, description });
  const token = account.secrets.token || '';
  if (token.trim() === '') bad('token', 'is required');
  else if (/\s/.test(token.trim())) bad('token', 'must be one line without spaces');
  const mech = account.config.mechanism || '';
  if (mech !== '' && !MECHANISMS.includes(mech)) bad('mechanism', `must be XOAUTH2 or OAUTHBEARER, not ${JSON.stringify(mech)}`);
  const life = account.config.lifetime_seconds || '';
  if (life !== '' && !(/^\d+$/.test(life) && Number(life) > 0)) bad('lifetime_seconds', `must be a positive whole number of seconds, not ${JSON.stringify(life)}`);
  const notAfter = account.config.not_after || '';
  if (notAfter !== '' && !(RFC3339.test(notAfter) && !Number.isNaN(Date.parse(notAfter)))) {
    bad('not_after', `must be a time like 2027-01-31T00:00:00Z, not ${JSON.stringify(notAfter)}`);
  }
  if (!account.username) bad('username', 'is required');
  return violations;
}

// A non-secret identifier of the stored token, for support: the start of its SHA-256.
function tokenId(token) {
  return crypto.createHash('sha256').update(token).digest('hex').slice(0, 12);
}

function issueCredential(req) {
  const account = req.account;
  const violations = validateConfig(account);
  if (violations.length > 0) {
    throw new ProviderError({
      reason: Reason.CONFIG_INVALID,
      message: violations.map((v) => `${v.field}: ${v.description}`).join('; '),
      action: 'Correct the mailbox\'s nodetoken settings',
    });
  }
  const token = account.secrets.token.trim();
  const now = Date.now();
  const notAfter = account.config.not_after ? Date.parse(account.config.not_after) : 0;
  if (notAfter && notAfter <= now) {
    throw new ProviderError({
      reason: Reason.INVALID_CREDENTIALS,
      code: 'TOKEN_EXPIRED',
      message: `the stored token expired at ${new Date(notAfter).toISOString()}`,
      action: 'Store a new token for the mailbox, with its new expiry in not_after',
      supportIds: { token_id: tokenId(token) },
    });
  }
  if (req.force_refresh) {
    // The mail server refused the token last time; a stored token cannot be refreshed, so the
    // same one is presented again and the mail server decides.
    logger.warn('the mail server refused the stored token; presenting it again', { mailbox_id: account.mailbox_id, token_id: tokenId(token) });
  }
  let expiry = 0;
  if (account.config.lifetime_seconds) expiry = now + Number(account.config.lifetime_seconds) * 1000;
  if (notAfter && (expiry === 0 || notAfter < expiry)) expiry = notAfter;
  const warnings = [];
  if (notAfter && notAfter - now < WARN_BEFORE_MS) {
    warnings.push(`the stored token expires at ${new Date(notAfter).toISOString()}: store a new one before then`);
  }
  logger.debug('issued the stored token', { mailbox_id: account.mailbox_id, token_id: tokenId(token) });
  return {
    credential: {
      mechanism: account.config.mechanism || 'XOAUTH2',
      identity: account.username,
      secret: token,
      expire_time: expiry ? timestamp(expiry) : null,
    },
    health: warnings.length > 0 ? { warnings } : null,
  };
}

module.exports = { describe, validateConfig, issueCredential };
