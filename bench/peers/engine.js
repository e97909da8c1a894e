// BullMQ beside our engine in bench-engine: the same no-op job, the same shapes.
//   node engine.js enqueue <jobs> <lanes> <bytes>  add <jobs> jobs from <lanes> concurrent
//                                          single adds, each with <bytes> of data (ours'
//                                          message size, so Redis memory compares like for
//                                          like); prints {"enqueue_per_s": ...}
//   node engine.js work <processes> <slots> <processes> processes, each a Worker with
//                                          concurrency <slots>, until SIGTERM
// The queue is `noop` under the prefix `peer` on REDIS_URL. Jobs keep BullMQ's defaults
// (completed jobs are kept), so the benchmark counts them in `peer:noop:completed`.
"use strict";

const cluster = require("node:cluster");
const IORedis = require("ioredis");
const { Queue, Worker } = require("bullmq");

const QUEUE = "noop";
const PREFIX = "peer";
const [mode, first, second, third] = process.argv.slice(2);

function connection() {
  return new IORedis(process.env.REDIS_URL, { maxRetriesPerRequest: null });
}

async function enqueue(jobs, lanes, bytes) {
  const data = { pad: "x".repeat(Math.max(0, bytes - 10)) }; // {"pad":""} is 10 bytes
  const queue = new Queue(QUEUE, { connection: connection(), prefix: PREFIX });
  await queue.waitUntilReady();
  let next = 0;
  const started = process.hrtime.bigint();
  async function lane() {
    while (next < jobs) {
      next += 1;
      await queue.add("noop", data);
    }
  }
  await Promise.all(Array.from({ length: lanes }, lane));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  console.log(JSON.stringify({ enqueue_per_s: jobs / seconds }));
  await queue.close();
  process.exit(0);
}

function work(processes, slots) {
  if (cluster.isPrimary) {
    for (let i = 0; i < processes; i += 1) cluster.fork();
    process.on("SIGTERM", () => {
      for (const worker of Object.values(cluster.workers)) worker.kill("SIGTERM");
    });
    cluster.on("exit", () => { if (Object.keys(cluster.workers).length === 0) process.exit(0); });
    return;
  }
  const worker = new Worker(QUEUE, async () => {}, { connection: connection(), prefix: PREFIX, concurrency: slots });
  process.on("SIGTERM", () => worker.close().then(() => process.exit(0)));
}

if (mode === "enqueue") {
  enqueue(Number(first), Number(second), Number(third || 0));
} else if (mode === "work") {
  work(Number(first), Number(second));
} else {
  console.error("usage: node engine.js enqueue <jobs> <lanes> | work <processes> <slots>");
  process.exit(2);
}
