'use strict';
// A self-signed certificate for go-plugin's automatic mutual TLS, made with Node's own crypto: an
// ECDSA P-256 key, and the certificate's DER written here (a few fixed structures) and signed
// with that key. The host accepts the certificate only for the DNS name "localhost", as a
// subject alternative name; it pins the certificate itself, so it needs no chain.
//
// Why not a library: node-forge (no dependencies) signs certificates with RSA keys only, and a
// 2048-bit RSA key took 0.7 s to generate here, at every start of the provider; @peculiar/x509
// brings twenty packages and needs a reflect-metadata polyfill; the openssl command would be a
// dependency outside package-lock.json. This file is all the certificate code there is.

const crypto = require('node:crypto');

// DER: tag, length, contents.
function der(tag, ...contents) {
  const body = Buffer.concat(contents);
  let len;
  if (body.length < 0x80) {
    len = Buffer.from([body.length]);
  } else {
    const bytes = [];
    for (let n = body.length; n > 0; n >>= 8) bytes.unshift(n & 0xff);
    len = Buffer.from([0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([Buffer.from([tag]), len, body]);
}

const seq = (...c) => der(0x30, ...c);
const set = (...c) => der(0x31, ...c);
const octets = (b) => der(0x04, b);
const bool = (v) => der(0x01, Buffer.from([v ? 0xff : 0]));
const utf8 = (s) => der(0x0c, Buffer.from(s, 'utf8'));
const bits = (b, unused = 0) => der(0x03, Buffer.from([unused]), b);
const explicit = (n, c) => der(0xa0 | n, c);

function integer(buf) {
  let b = buf;
  while (b.length > 1 && b[0] === 0 && b[1] < 0x80) b = b.subarray(1);
  if (b[0] >= 0x80) b = Buffer.concat([Buffer.from([0]), b]); // stays positive
  return der(0x02, b);
}

function oid(dotted) {
  const [a, b, ...rest] = dotted.split('.').map(Number);
  const out = [40 * a + b];
  for (const n of rest) {
    const groups = [];
    for (let v = n; ; v = Math.floor(v / 128)) {
      groups.unshift(v % 128);
      if (v < 128) break;
    }
    groups.forEach((g, i) => out.push(i < groups.length - 1 ? g | 0x80 : g));
  }
  return der(0x06, Buffer.from(out));
}

// UTCTime up to 2049, GeneralizedTime after (RFC 5280, 4.1.2.5).
function time(d) {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z'; // YYYYMMDDHHMMSSZ
  return d.getUTCFullYear() < 2050 ? der(0x17, Buffer.from(iso.slice(2))) : der(0x18, Buffer.from(iso));
}

function extension(id, critical, value) {
  return critical ? seq(oid(id), bool(true), octets(value)) : seq(oid(id), octets(value));
}

// selfSignedCertificate returns a new key (PEM), its certificate (PEM) and the certificate's DER.
function selfSignedCertificate(hostname = 'localhost') {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ecdsaWithSHA256 = seq(oid('1.2.840.10045.4.3.2'));
  const name = seq(set(seq(oid('2.5.4.3'), utf8(hostname)))); // CN=<hostname>
  const now = Date.now();
  const tbs = seq(
    explicit(0, integer(Buffer.from([2]))), // version 3
    integer(crypto.randomBytes(16)),
    ecdsaWithSHA256,
    name, // issuer: itself
    seq(time(new Date(now - 30 * 1000)), time(new Date(now + 10 * 365 * 24 * 3600 * 1000))),
    name,
    publicKey.export({ type: 'spki', format: 'der' }),
    der(0xa3, seq(
      extension('2.5.29.19', true, seq(bool(true))), // basicConstraints: CA (it signs itself)
      extension('2.5.29.15', true, bits(Buffer.from([0x84]), 2)), // keyUsage: digitalSignature, keyCertSign
      extension('2.5.29.37', false, seq(oid('1.3.6.1.5.5.7.3.1'), oid('1.3.6.1.5.5.7.3.2'))), // serverAuth, clientAuth
      extension('2.5.29.17', false, seq(der(0x82, Buffer.from(hostname)))), // subjectAltName: dNSName
    )),
  );
  const signature = crypto.sign('sha256', tbs, { key: privateKey, dsaEncoding: 'der' });
  const cert = seq(tbs, ecdsaWithSHA256, bits(signature));
  const pem = `-----BEGIN CERTIFICATE-----\n${cert.toString('base64').match(/.{1,64}/g).join('\n')}\n-----END CERTIFICATE-----\n`;
  return { keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }), certPem: pem, der: cert };
}

module.exports = { selfSignedCertificate };
