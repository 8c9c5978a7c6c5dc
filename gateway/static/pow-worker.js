// Solves a waiting room's proof-of-work challenge off the page's main thread: finds a
// nonce such that SHA-256(challenge + ":" + nonce) starts with `difficulty` zero bits.
// Plain SHA-256 over ASCII text, no dependencies (crypto.subtle is one promise per hash,
// far too slow for a search). Checked against Python's hashlib in tests/test_pow.py.
"use strict";

var K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
]);
var W = new Int32Array(64);
var H = new Int32Array(8);
var IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

// One 64-byte block (16 words of `words` from `at`) into the state H.
function compress(words, at) {
  for (var t = 0; t < 16; t++) W[t] = words[at + t];
  for (t = 16; t < 64; t++) {
    var w15 = W[t - 15], w2 = W[t - 2];
    var s0 = ((w15 >>> 7) | (w15 << 25)) ^ ((w15 >>> 18) | (w15 << 14)) ^ (w15 >>> 3);
    var s1 = ((w2 >>> 17) | (w2 << 15)) ^ ((w2 >>> 19) | (w2 << 13)) ^ (w2 >>> 10);
    W[t] = (W[t - 16] + s0 + W[t - 7] + s1) | 0;
  }
  var a = H[0], b = H[1], c = H[2], d = H[3], e = H[4], f = H[5], g = H[6], h = H[7];
  for (t = 0; t < 64; t++) {
    var S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    var t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[t] + W[t]) | 0;
    var S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    var t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
  }
  H[0] = (H[0] + a) | 0; H[1] = (H[1] + b) | 0; H[2] = (H[2] + c) | 0; H[3] = (H[3] + d) | 0;
  H[4] = (H[4] + e) | 0; H[5] = (H[5] + f) | 0; H[6] = (H[6] + g) | 0; H[7] = (H[7] + h) | 0;
}

function wordsOf(text, words) {
  for (var i = 0; i < text.length; i++) {
    words[i >> 2] |= (text.charCodeAt(i) & 0xff) << (24 - (i & 3) * 8);
  }
}

// A search over nonces for one prefix: the prefix's whole blocks are hashed once (the
// "midstate"); each try hashes only the last one or two blocks.
function Search(prefix) {
  var whole = (prefix.length >> 6) << 6;
  var head = new Int32Array(whole >> 2);
  wordsOf(prefix.slice(0, whole), head);
  H.set(IV);
  for (var at = 0; at < head.length; at += 16) compress(head, at);
  this.mid = Int32Array.from(H);
  this.rest = prefix.slice(whole);
  this.bits = whole * 8;
  this.tail = new Int32Array(32);
}

// Leading zero bits of SHA-256(prefix + nonce).
Search.prototype.zeroBits = function (nonce) {
  var text = this.rest + nonce;
  var n = text.length;
  var blocks = (n + 9 + 63) >> 6;
  var tail = this.tail;
  tail.fill(0);
  wordsOf(text, tail);
  tail[n >> 2] |= 0x80 << (24 - (n & 3) * 8);
  tail[blocks * 16 - 1] = this.bits + n * 8;
  H.set(this.mid);
  compress(tail, 0);
  if (blocks === 2) compress(tail, 16);
  var first = Math.clz32(H[0]);
  return first < 32 ? first : 32 + Math.clz32(H[1]);
};

self.onmessage = function (event) {
  var search = new Search(event.data.challenge + ":");
  var difficulty = event.data.difficulty;
  var started = Date.now();
  for (var nonce = 0; ; nonce++) {
    if (search.zeroBits(String(nonce)) >= difficulty) {
      self.postMessage({ nonce: String(nonce), hashes: nonce + 1, ms: Date.now() - started });
      return;
    }
  }
};
