// The peer of `POST /api/v1/characters` for bench-api: what a Node team would build instead,
// Fastify 5 + BullMQ, doing the work our route does, with the same Redis and SQLite:
//  - the API key: `Authorization: Bearer iq_<id>_<secret>`, one HMGET of the key's hash as
//    our ApiKeyStore writes it, the SHA-256 digest compared in constant time (no cache: ours
//    has none either);
//  - the per-user request rate: our own sliding-window script (request_limit.lua, read
//    from our package), one EVALSHA;
//  - the per-user quota of unfinished jobs (USER_MAX_PENDING) and the queue's length cap
//    (MAX_QUEUE_LENGTH): one script that checks and counts both;
//  - the pose checked against a per-process cache of the poses table (re-read after 60 s);
//  - the character inserted into SQLite (WAL, synchronous NORMAL, as ours);
//  - the job added with the seed's options (3 attempts, exponential backoff from 5 s,
//    priority by tier), its id stored on the character in the same row;
//  - a 201 with the character and its job, the body checked by a JSON schema first.
// API_PROCESSES processes (node:cluster, the kernel spreads connections, as SO_REUSEPORT
// does for ours). Settings come from the environment the benchmark gives both services.
"use strict";

const cluster = require("node:cluster");
const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");
const Database = require("better-sqlite3");
const Fastify = require("fastify");
const IORedis = require("ioredis");
const { Queue } = require("bullmq");

const env = process.env;
const PROCESSES = Number(env.API_PROCESSES || 2);
const PORT = Number(env.API_PORT || 8089);
const QUEUE = env.QUEUE_NAME || "images";
const PREFIX = `iq:{${QUEUE}}:`; // our keys' layout: the peer reads the keys we made
const USER_RPS = Number(env.API_USER_RPS || 20);
const MAX_PENDING = Number(env.USER_MAX_PENDING || 100);
const MAX_QUEUE = Number(env.MAX_QUEUE_LENGTH || 100000);
const PRIORITY = { premium: 1, regular: 2, bulk: 3 };
const PRESENTED = /^iq_([0-9a-f]{16})_[A-Za-z0-9_-]{43}$/;
const LIMIT_LUA = fs.readFileSync(path.join(env.IQ_LUA_DIR, "request_limit.lua"), "utf8");
const QUOTA_LUA = `
-- KEYS[1] pending per user (hash)  KEYS[2] queued in all (string)
-- ARGV[1] user  ARGV[2] max pending (0: none)  ARGV[3] max queued (0: none)
local mine = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > 0 and mine >= tonumber(ARGV[2]) then return 1 end
local all = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[3]) > 0 and all >= tonumber(ARGV[3]) then return 2 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('INCR', KEYS[2])
return 0`;

const BODY = {
  type: "object",
  additionalProperties: false,
  required: ["name", "personality"],
  properties: {
    name: { type: "string", minLength: 1, maxLength: 100 },
    description: { type: "string", maxLength: 2000 },
    priority: { enum: ["high", "normal", "low"] },
    personality: {
      type: "object",
      additionalProperties: false,
      required: ["poseId"],
      properties: { poseId: { type: "string", minLength: 1, maxLength: 64 } },
    },
  },
};

function problem(reply, status, detail, headers = {}) {
  reply.code(status).headers(headers).type("application/problem+json");
  return { status, title: detail, detail };
}

function serve() {
  const redis = new IORedis(env.REDIS_URL, { enableAutoPipelining: false });
  redis.defineCommand("requestLimit", { numberOfKeys: 1, lua: LIMIT_LUA });
  redis.defineCommand("quota", { numberOfKeys: 2, lua: QUOTA_LUA });
  const queue = new Queue(QUEUE, {
    connection: new IORedis(env.REDIS_URL, { maxRetriesPerRequest: null }), prefix: "peer",
  });
  const db = new Database(env.PEER_DB);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.pragma("busy_timeout = 5000");
  const insert = db.prepare(
    "INSERT INTO characters (id, user_id, name, pose_id, description, personality, image_job_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
  );
  let poses = { ids: new Set(), readAt: 0 };
  function pose(id) {
    if (Date.now() - poses.readAt > 60000) {
      poses = { ids: new Set(db.prepare("SELECT id FROM poses").all().map((r) => r.id)), readAt: Date.now() };
    }
    return poses.ids.has(id);
  }

  async function caller(header) {
    const match = /^Bearer\s+(\S+)$/i.exec(header || "");
    const key = match && PRESENTED.exec(match[1]);
    if (!key) return null;
    const [digest, userId, tier] = await redis.hmget(`${PREFIX}apikey:${key[1]}`, "digest", "user_id", "tier");
    if (!digest) return null;
    const mine = crypto.createHash("sha256").update(match[1]).digest("hex");
    if (!crypto.timingSafeEqual(Buffer.from(digest), Buffer.from(mine))) return null;
    return { userId, tier };
  }

  const app = Fastify({ logger: false });
  app.post("/api/v1/characters", { schema: { body: BODY } }, async (request, reply) => {
    const who = await caller(request.headers.authorization);
    if (!who) return problem(reply, 401, "A valid API key is required.", { "WWW-Authenticate": "Bearer" });
    if (USER_RPS > 0) {
      const waitUs = await redis.requestLimit(`${PREFIX}ratelimit:${who.userId}`, USER_RPS, 1000);
      if (waitUs > 0) return problem(reply, 429, `More than ${USER_RPS} requests per second.`, { "Retry-After": String(Math.max(1, Math.ceil(waitUs / 1e6))) });
    }
    const body = request.body;
    if (!pose(body.personality.poseId)) return problem(reply, 422, "Unknown pose.");
    const full = await redis.quota(`peer:pending`, `peer:queued`, who.userId, MAX_PENDING, MAX_QUEUE);
    if (full) return problem(reply, 429, full === 1 ? "Too many unfinished jobs." : "The queue is full.", { "Retry-After": "1" });
    const id = crypto.randomBytes(12).toString("hex");
    const jobId = `img-${crypto.randomUUID()}`;
    const now = Date.now() / 1000;
    insert.run(id, who.userId, body.name.trim(), body.personality.poseId, body.description || "",
      JSON.stringify(body.personality), jobId, now, now);
    await queue.add("generate_image", { characterId: id, name: body.name, poseId: body.personality.poseId, userId: who.userId },
      { jobId, attempts: 3, backoff: { type: "exponential", delay: 5000 }, priority: PRIORITY[who.tier] || 2 });
    reply.code(201);
    return { data: { _id: id, name: body.name.trim(), personality: body.personality, displayImageUrls: [], imageJob: { id: jobId, status: "waiting" } } };
  });
  app.listen({ port: PORT, host: "127.0.0.1" }).then(() => process.send && process.send("ready"));
}

if (cluster.isPrimary) {
  let ready = 0;
  for (let i = 0; i < PROCESSES; i += 1) {
    cluster.fork().on("message", (m) => {
      ready += m === "ready" ? 1 : 0;
      if (m === "ready" && ready === PROCESSES) console.log(`all ${PROCESSES} peer processes ready`);
    });
  }
  process.on("SIGTERM", () => {
    for (const worker of Object.values(cluster.workers)) worker.kill("SIGTERM");
  });
  cluster.on("exit", () => { if (Object.keys(cluster.workers).length === 0) process.exit(0); });
} else {
  serve();
  process.on("SIGTERM", () => process.exit(0));
}
