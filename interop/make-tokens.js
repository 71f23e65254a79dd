// Makes a client's token pair the way the original Node stack did, for wsmq's e2e suite.
//
// Run by crates/wsmq-gateway/tests/e2e/node.rs as `node make-tokens.js`, with the request on
// stdin (secrets never go on the command line, where other users can read them):
//   {"secret": "...", "user": "57c8...", "ttl": 600}
// and one JSON line on stdout:
//   {"jwt": "...", "accessToken": "...", "cipher": "createCipher"}
// - jwt: npm jsonwebtoken, HS256, payload {sub: user}, expiring after ttl seconds;
// - accessToken: the tokens2 token, hex of crypto.createCipher('aes-256-ctr', secret) over
//   JSON {"userId": user}. Registering it in Redis (wsmq:access:{user}) is the caller's job.
// createCipher was removed in Node 22; there the same key and IV are derived by hand
// (OpenSSL EVP_BytesToKey, MD5, one round, no salt) and "cipher" says "EVP_BytesToKey".
"use strict";

const crypto = require("crypto");
const jwt = require("jsonwebtoken");

function accessToken(secret, plaintext) {
  if (typeof crypto.createCipher === "function") {
    const cipher = crypto.createCipher("aes-256-ctr", secret);
    return ["createCipher", cipher.update(plaintext, "utf8", "hex") + cipher.final("hex")];
  }
  const pass = Buffer.from(secret, "utf8");
  let block = Buffer.alloc(0);
  let derived = Buffer.alloc(0);
  while (derived.length < 48) {
    block = crypto.createHash("md5").update(Buffer.concat([block, pass])).digest();
    derived = Buffer.concat([derived, block]);
  }
  const cipher = crypto.createCipheriv("aes-256-ctr", derived.subarray(0, 32), derived.subarray(32, 48));
  return ["EVP_BytesToKey", cipher.update(plaintext, "utf8", "hex") + cipher.final("hex")];
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  input += chunk;
});
process.stdin.on("end", () => {
  const { secret, user, ttl = 600 } = JSON.parse(input);
  if (!secret || !user) {
    process.stderr.write("make-tokens.js: stdin needs {\"secret\", \"user\"}\n");
    process.exit(2);
  }
  const token = jwt.sign({ sub: user }, secret, { algorithm: "HS256", expiresIn: ttl });
  const [how, access] = accessToken(secret, JSON.stringify({ userId: user }));
  process.stdout.write(JSON.stringify({ jwt: token, accessToken: access, cipher: how }) + "\n");
});
