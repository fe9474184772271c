'use strict';
// The mailintake auth provider protocol for Node.js, written from plugins/README.md ("The protocol
// (for any language)") without the Go SDK: go-plugin's handshake, automatic mutual TLS, the
// health, controller and stdio services go-plugin's host calls, the typed error detail, hclog
// JSON logs and the process's lifetime. A provider is an object with describe, validateConfig
// and issueCredential (and, for an interactive sign-in, beginAuthorization and
// pollAuthorization); serve(provider) runs it. Copy this file and cert.js to write another.

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

const { selfSignedCertificate } = require('./cert');

// The go-plugin handshake the mailintake server (the host) uses: plugins/authplugin.Handshake.
const CORE_PROTOCOL_VERSION = 1; // go-plugin's own protocol version
const APP_PROTOCOL_VERSION = 1; // authplugin.v1
const MAGIC_COOKIE_KEY = 'MAILINTAKE_AUTH_PLUGIN';
const MAGIC_COOKIE_VALUE = '6c1f0b0e-provider-v1';
const HEALTH_SERVICE = 'plugin'; // go-plugin asks grpc.health.v1.Health about this name

// The failure classes of authplugin.v1.Reason.
const Reason = Object.freeze({
  UNSPECIFIED: 'REASON_UNSPECIFIED',
  INVALID_CREDENTIALS: 'REASON_INVALID_CREDENTIALS',
  MFA_REQUIRED: 'REASON_MFA_REQUIRED',
  CONSENT_REQUIRED: 'REASON_CONSENT_REQUIRED',
  ACCOUNT_LOCKED: 'REASON_ACCOUNT_LOCKED',
  ACCOUNT_DISABLED: 'REASON_ACCOUNT_DISABLED',
  PASSWORD_EXPIRED: 'REASON_PASSWORD_EXPIRED',
  CONFIG_INVALID: 'REASON_CONFIG_INVALID',
  TEMPORARY: 'REASON_TEMPORARY',
  AUTHORIZATION_REQUIRED: 'REASON_AUTHORIZATION_REQUIRED',
  AUTHORIZATION_PENDING: 'REASON_AUTHORIZATION_PENDING',
  AUTHORIZATION_EXPIRED: 'REASON_AUTHORIZATION_EXPIRED',
});

// The same reasons in words, as the Go SDK writes them in the status message.
const reasonWords = {
  REASON_UNSPECIFIED: 'unknown',
  REASON_INVALID_CREDENTIALS: 'invalid credentials',
  REASON_MFA_REQUIRED: 'multi-factor authentication required',
  REASON_CONSENT_REQUIRED: 'consent required',
  REASON_ACCOUNT_LOCKED: 'account locked',
  REASON_ACCOUNT_DISABLED: 'account disabled',
  REASON_PASSWORD_EXPIRED: 'password expired',
  REASON_CONFIG_INVALID: 'configuration invalid',
  REASON_TEMPORARY: 'temporary failure',
  REASON_AUTHORIZATION_REQUIRED: 'sign-in required',
  REASON_AUTHORIZATION_PENDING: 'sign-in pending',
  REASON_AUTHORIZATION_EXPIRED: 'sign-in expired',
};

// ProviderError is a failure the admin can act on. Thrown (or rejected) from a provider method,
// it reaches the server as an authplugin.v1.Error with all its fields; any other error is shown
// as a provider failure.
class ProviderError extends Error {
  constructor({ reason, code = '', message = '', action = '', supportIds = {}, retryAfterSeconds = 0 }) {
    super(message);
    this.name = 'ProviderError';
    this.reason = reasonWords[reason] ? reason : Reason.UNSPECIFIED;
    this.code = code;
    this.action = action;
    this.supportIds = supportIds;
    this.retryAfterSeconds = retryAfterSeconds;
  }

  // The status message: the reason in words, the code, the message and the action.
  describe() {
    let s = reasonWords[this.reason];
    if (this.code) s += ` (${this.code})`;
    if (this.message) s += `: ${this.message}`;
    if (this.action) s += `. ${this.action}`;
    return s;
  }
}

// ---------------------------------------------------------------------------------------------
// Logs. stdout carries the handshake line; logs go to stderr as hclog JSON lines, which the host
// logs with their level. @timestamp must have exactly six fractional digits (go-plugin parses
// the layout 2006-01-02T15:04:05.000000Z07:00; any other line is logged verbatim at debug).

const stderrWrite = process.stderr.write.bind(process.stderr);
const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error']);

function hclogTimestamp(d) {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

function log(level, message, fields = {}) {
  const entry = {};
  for (const [k, v] of Object.entries(fields)) {
    if (k.startsWith('@')) continue;
    entry[k] = v instanceof Error ? v.message : v;
  }
  entry['@level'] = LEVELS.has(level) ? level : 'info';
  entry['@message'] = String(message);
  entry['@timestamp'] = hclogTimestamp(new Date());
  stderrWrite(JSON.stringify(entry) + '\n');
}

const logger = {
  trace: (msg, fields) => log('trace', msg, fields),
  debug: (msg, fields) => log('debug', msg, fields),
  info: (msg, fields) => log('info', msg, fields),
  warn: (msg, fields) => log('warn', msg, fields),
  error: (msg, fields) => log('error', msg, fields),
};

// ---------------------------------------------------------------------------------------------
// Protocol definitions, loaded at run time: the repository's proto/ (authplugin.v1) and
// proto/third_party (google.rpc.Status, grpc.health.v1, go-plugin's services). install.sh copies
// the files needed into the installed provider's own proto/ directory.

function protoDirs() {
  const own = path.join(__dirname, '..', 'proto');
  if (fs.existsSync(path.join(own, 'authplugin', 'v1', 'authplugin.proto'))) return [own]; // installed
  const repo = path.join(__dirname, '..', '..', '..', '..', 'proto'); // run from the repository
  return [repo, path.join(repo, 'third_party')];
}

const PROTO_FILES = [
  'authplugin/v1/authplugin.proto',
  'grpc/health/v1/health.proto',
  'hashicorp/go-plugin/grpc_controller.proto',
  'hashicorp/go-plugin/grpc_stdio.proto',
];

function loadProtocol() {
  const includeDirs = protoDirs();
  const definition = protoLoader.loadSync(PROTO_FILES, {
    includeDirs,
    keepCase: true, // the proto's own field names: mailbox_id, expire_time, …
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const services = grpc.loadPackageDefinition(definition);

  // google.rpc.Status and authplugin.v1.Error are encoded by hand into the error trailer, so
  // they are loaded with protobufjs as well (proto-loader only builds service codecs).
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => {
    for (const dir of includeDirs) {
      const p = path.join(dir, target);
      if (fs.existsSync(p)) return p;
    }
    return target;
  };
  root.loadSync(['google/rpc/status.proto', 'authplugin/v1/authplugin.proto'], { keepCase: true });
  return {
    services,
    Status: root.lookupType('google.rpc.Status'),
    ErrorDetail: root.lookupType('authplugin.v1.Error'),
  };
}

// ---------------------------------------------------------------------------------------------
// Errors on the wire: a gRPC status whose grpc-status-details-bin trailer holds a
// google.rpc.Status with the same code and the authplugin.v1.Error packed in an Any.

function toStatus(proto, err) {
  if (err instanceof ProviderError) {
    const code = err.reason === Reason.TEMPORARY ? grpc.status.UNAVAILABLE : grpc.status.FAILED_PRECONDITION;
    const message = err.describe();
    const detail = {
      reason: err.reason,
      code: err.code,
      message: err.message,
      action: err.action,
      support_ids: err.supportIds,
    };
    if (err.retryAfterSeconds > 0) detail.retry_after = duration(err.retryAfterSeconds);
    const status = proto.Status.fromObject({
      code, // must equal the grpc-status code, or Go's client replaces the status with INTERNAL
      message,
      details: [{
        type_url: 'type.googleapis.com/authplugin.v1.Error',
        value: proto.ErrorDetail.encode(proto.ErrorDetail.fromObject(detail)).finish(),
      }],
    });
    const metadata = new grpc.Metadata();
    metadata.set('grpc-status-details-bin', Buffer.from(proto.Status.encode(status).finish()));
    return { code, details: message, metadata };
  }
  if (err && err.code !== undefined && Number.isInteger(err.code) && err.details !== undefined) {
    return err; // already a gRPC status
  }
  logger.error('provider failure', { error: err && err.stack ? err.stack : String(err) });
  return { code: grpc.status.INTERNAL, details: err && err.message ? err.message : String(err) };
}

// timestamp converts a Date (or milliseconds) into a google.protobuf.Timestamp.
function timestamp(date) {
  const ms = date instanceof Date ? date.getTime() : Number(date);
  const seconds = Math.floor(ms / 1000);
  return { seconds: String(seconds), nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

// duration converts seconds into a google.protobuf.Duration.
function duration(secondsFloat) {
  const seconds = Math.floor(secondsFloat);
  return { seconds: String(seconds), nanos: Math.round((secondsFloat - seconds) * 1e9) };
}

// ---------------------------------------------------------------------------------------------
// Listening: a loopback TCP port in the range the host gives (PLUGIN_MIN_PORT..PLUGIN_MAX_PORT).

function bind(server, creds) {
  const min = Number(process.env.PLUGIN_MIN_PORT) || 0;
  const max = Number(process.env.PLUGIN_MAX_PORT) || 0;
  const tryBind = (port) => new Promise((resolve, reject) => {
    server.bindAsync(`127.0.0.1:${port}`, creds, (err, bound) => (err ? reject(err) : resolve(bound)));
  });
  if (min <= 0 || max < min) return tryBind(0);
  const span = max - min + 1;
  const first = crypto.randomInt(span);
  return (async () => {
    let lastErr;
    for (let i = 0; i < Math.min(span, 100); i++) {
      try {
        return await tryBind(min + ((first + i) % span));
      } catch (err) {
        lastErr = err;
      }
    }
    throw new Error(`no free port in ${min}..${max}: ${lastErr && lastErr.message}`);
  })();
}

// ---------------------------------------------------------------------------------------------
// The parent process. The server kills its providers when it stops, but a server that is itself
// killed cannot: exit once the parent is gone (this process was re-parented).

function currentParentPid() {
  try {
    // Linux: field 4 of /proc/self/stat, after the command name in parentheses.
    const stat = fs.readFileSync('/proc/self/stat', 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

function watchParent(onGone) {
  const parent = process.ppid; // fixed at start: Node does not update process.ppid
  const timer = setInterval(() => {
    const now = currentParentPid();
    let gone;
    if (now !== null) {
      gone = now !== parent;
    } else {
      try {
        process.kill(parent, 0);
        gone = false;
      } catch (err) {
        gone = err.code === 'ESRCH';
      }
    }
    if (gone) {
      clearInterval(timer);
      onGone();
    }
  }, 1000);
  timer.unref();
}

// ---------------------------------------------------------------------------------------------
// serve runs provider as a plugin process. It returns once the handshake line is printed; the
// process then lives until the host shuts it down, kills it, or goes away.

async function serve(provider) {
  if (process.env[MAGIC_COOKIE_KEY] !== MAGIC_COOKIE_VALUE) {
    stderrWrite('This program is a mailintake auth provider plugin: the mailintake server runs it.\n' +
      'Put it in the server\'s plugin directory instead of running it directly.\n');
    process.exit(1);
  }
  const versions = (process.env.PLUGIN_PROTOCOL_VERSIONS || String(APP_PROTOCOL_VERSION)).split(',').map((v) => v.trim());
  if (!versions.includes(String(APP_PROTOCOL_VERSION))) {
    // Answer with ours anyway: the host then says which versions it wanted.
    logger.warn('the host does not speak this provider\'s protocol version', { host_versions: versions.join(','), provider_version: APP_PROTOCOL_VERSION });
  }
  const clientCertPem = process.env.PLUGIN_CLIENT_CERT;
  if (!clientCertPem) {
    // Without it there is no mutual TLS, and credentials would cross the loopback in the clear.
    logger.error('PLUGIN_CLIENT_CERT is not set: refusing to serve without automatic mutual TLS');
    process.exit(1);
  }
  try {
    new crypto.X509Certificate(clientCertPem); // eslint-disable-line no-new
  } catch (err) {
    logger.error('PLUGIN_CLIENT_CERT is not a PEM certificate', { error: err.message });
    process.exit(1);
  }

  process.on('SIGINT', () => {}); // Ctrl-C in the server's terminal is the server's to handle, as go-plugin does
  process.on('uncaughtException', (err) => {
    logger.error('uncaught exception', { error: err.stack || String(err) });
    process.exit(1);
  });
  process.on('unhandledRejection', (err) => {
    logger.error('unhandled rejection', { error: (err && err.stack) || String(err) });
    process.exit(1);
  });

  const proto = loadProtocol();
  const server = new grpc.Server();
  const streams = new Set(); // open stdio and health watch streams, ended at shutdown
  let stopping = false;

  function shutdown(reason) {
    if (stopping) return;
    stopping = true;
    logger.debug('plugin stopping', { reason });
    for (const s of streams) s.end();
    streams.clear();
    // Graceful: running calls finish; forced after a second, well inside the host's 2 s.
    const force = setTimeout(() => {
      server.forceShutdown();
      process.exit(0);
    }, 1000);
    server.tryShutdown(() => {
      clearTimeout(force);
      process.exit(0);
    });
  }

  // A unary handler around a provider method: errors become statuses.
  const unary = (fn) => (call, callback) => {
    const ac = new AbortController();
    call.on('cancelled', () => ac.abort());
    const ctx = { deadline: call.getDeadline(), signal: ac.signal, logger };
    Promise.resolve()
      .then(() => fn(call.request, ctx))
      .then((res) => callback(null, res), (err) => callback(toStatus(proto, err)));
  };
  const unimplemented = (what) => (call, callback) =>
    callback({ code: grpc.status.UNIMPLEMENTED, details: `the provider does not support ${what}` });

  // authplugin.v1.ProviderService.
  const interactive = typeof provider.beginAuthorization === 'function' && typeof provider.pollAuthorization === 'function';
  server.addService(proto.services.authplugin.v1.ProviderService.service, {
    Describe: unary(async (req, ctx) => ({ ...(await provider.describe(ctx)), interactive })),
    ValidateConfig: unary(async (req, ctx) => ({ violations: (await provider.validateConfig(req.account, ctx)) || [] })),
    IssueCredential: unary((req, ctx) => provider.issueCredential(req, ctx)),
    BeginAuthorization: interactive ? unary((req, ctx) => provider.beginAuthorization(req, ctx)) : unimplemented('interactive sign-in'),
    PollAuthorization: interactive ? unary((req, ctx) => provider.pollAuthorization(req, ctx)) : unimplemented('interactive sign-in'),
  });

  // grpc.health.v1.Health: SERVING for "plugin" (go-plugin's name) and "" (the whole server).
  const servingStatus = (service) => (service === '' || service === HEALTH_SERVICE ? 'SERVING' : null);
  server.addService(proto.services.grpc.health.v1.Health.service, {
    Check: (call, callback) => {
      const s = servingStatus(call.request.service);
      if (s) callback(null, { status: s });
      else callback({ code: grpc.status.NOT_FOUND, details: `unknown service ${call.request.service}` });
    },
    List: (call, callback) => callback(null, { statuses: { '': { status: 'SERVING' }, [HEALTH_SERVICE]: { status: 'SERVING' } } }),
    Watch: (call) => {
      call.write({ status: servingStatus(call.request.service) || 'SERVICE_UNKNOWN' });
      streams.add(call);
      call.on('cancelled', () => streams.delete(call));
    },
  });

  // plugin.GRPCController: the host's Kill asks for Shutdown, then waits 2 s for the process to
  // exit before it kills it and logs "plugin failed to exit gracefully".
  server.addService(proto.services.plugin.GRPCController.service, {
    Shutdown: (call, callback) => {
      callback(null, {});
      setImmediate(() => shutdown('the host asked'));
    },
  });

  // plugin.GRPCStdio: what the provider writes to stdout after the handshake travels here (the
  // host logs it at debug level) instead of into the pipe the host no longer reads.
  const pending = [];
  let pendingBytes = 0;
  const stdio = new Set();
  server.addService(proto.services.plugin.GRPCStdio.service, {
    StreamStdio: (call) => {
      stdio.add(call);
      streams.add(call);
      call.on('cancelled', () => {
        stdio.delete(call);
        streams.delete(call);
      });
      for (const data of pending.splice(0)) call.write({ channel: 'STDOUT', data });
      pendingBytes = 0;
    },
  });
  const toStdio = (chunk, encoding) => {
    const data = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk), typeof encoding === 'string' ? encoding : 'utf8');
    if (stdio.size === 0) {
      if (pendingBytes + data.length <= 64 * 1024) {
        pending.push(data);
        pendingBytes += data.length;
      }
      return;
    }
    for (const call of stdio) call.write({ channel: 'STDOUT', data });
  };

  // Automatic mutual TLS. The host generated its own certificate and passed it in
  // PLUGIN_CLIENT_CERT (PEM); the provider makes a key and a self-signed certificate, serves TLS
  // with it, requires the host's certificate from its clients, and prints its own certificate
  // (DER, standard base64 without padding) as the last field of the handshake line. The host
  // verifies it for the name "localhost": a DNS subject alternative name (cert.js).
  const { keyPem, certPem, der } = selfSignedCertificate();
  const creds = grpc.ServerCredentials.createSsl(
    Buffer.from(clientCertPem),
    [{ private_key: Buffer.from(keyPem), cert_chain: Buffer.from(certPem) }],
    true, // require and verify the host's certificate
  );
  const port = await bind(server, creds);

  // The handshake: one line on stdout, then never write to stdout again.
  const cert = der.toString('base64').replace(/=+$/, '');
  process.stdout.write(`${CORE_PROTOCOL_VERSION}|${APP_PROTOCOL_VERSION}|tcp|127.0.0.1:${port}|grpc|${cert}\n`);
  process.stdout.write = (chunk, encoding, cb) => {
    toStdio(chunk, encoding);
    if (typeof encoding === 'function') encoding();
    else if (typeof cb === 'function') cb();
    return true;
  };
  logger.debug('plugin serving', { address: `127.0.0.1:${port}`, pid: process.pid });

  process.on('SIGTERM', () => shutdown('SIGTERM'));
  watchParent(() => {
    logger.info('the server that started this provider is gone; exiting');
    process.exit(0);
  });
}

module.exports = { serve, ProviderError, Reason, logger, timestamp, duration };
