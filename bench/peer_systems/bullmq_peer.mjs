// BullMQ (Redis) behind a Fastify endpoint, as their documentation writes them. Run with node, from the
// npm directory python -m bench.peers installs them into (NODE_PATH is not read by ES modules: the
// benchmark runs this file from a copy in that directory).
//
//   node bullmq_peer.mjs serve --port P | work --concurrency C | fill N | latency M --key K
//
// A job lives in Redis only; finished jobs are kept there (BullMQ's default).
import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';

const NAME = 'bench-peers-bullmq';
const connection = { host: '127.0.0.1', port: 6379 };
const now = () => (performance.timeOrigin + performance.now()) / 1000;

const [mode, ...rest] = process.argv.slice(2);
const option = (name, fallback) => {
  const at = rest.indexOf(`--${name}`);
  return at >= 0 ? rest[at + 1] : fallback;
};

if (mode === 'serve') {
  const { default: Fastify } = await import('fastify');
  const queue = new Queue(NAME, { connection });
  const app = Fastify();
  app.post('/v1/jobs', async (request, reply) => {
    const job = await queue.add('noop', {});
    reply.code(202);
    return { id: job.id };
  });
  await app.listen({ host: '127.0.0.1', port: Number(option('port')) });
} else if (mode === 'work') {
  const redis = new IORedis(connection);
  const worker = new Worker(
    NAME,
    async (job) => {
      if (job.name === 'stamp') {
        const started = now();
        await redis.rpush(job.data.key, String(started));
      }
    },
    { connection, concurrency: Number(option('concurrency', '50')) },
  );
  const stop = async () => {
    await worker.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else if (mode === 'fill') {
  const queue = new Queue(NAME, { connection });
  const jobs = Number(rest[0]);
  for (let start = 0; start < jobs; start += 1000) {
    const n = Math.min(1000, jobs - start);
    await queue.addBulk(Array.from({ length: n }, () => ({ name: 'noop', data: {} })));
  }
  await queue.close();
} else if (mode === 'latency') {
  const queue = new Queue(NAME, { connection });
  const redis = new IORedis(connection);
  const key = option('key');
  const jobs = Number(rest[0]);
  const latencies = [];
  let missing = 0;
  await redis.del(key);
  for (let i = 0; i < jobs; i++) {
    await queue.add('stamp', { key });
    const acked = now();
    const got = await redis.blpop(key, 10);
    if (got === null) missing++;
    else latencies.push((Number(got[1]) - acked) * 1000);
    await new Promise((resolve) => setTimeout(resolve, 10 + 20 * Math.random()));
  }
  console.log(JSON.stringify({ latencies_ms: latencies, missing }));
  await queue.close();
  redis.disconnect();
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
