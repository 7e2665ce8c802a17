// A Fastify app that writes to SQLite all the time and keeps it backed up.
// Run it with `npm start`, then: curl -X POST http://127.0.0.1:3000/backup
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import Database from 'better-sqlite3'
import backup from 'fastify-sqlite-backup'

const dataDir = process.env.DATA_DIR ?? fileURLToPath(new URL('data', import.meta.url))
mkdirSync(dataDir, { recursive: true })

// The app's own connection. WAL mode lets backups run without blocking any writer.
const db = new Database(join(dataDir, 'app.db'))
db.pragma('journal_mode = WAL')
db.exec(`CREATE TABLE IF NOT EXISTS posts (
  id INTEGER PRIMARY KEY,
  title TEXT NOT NULL,
  body TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
)`)
const insertPost = db.prepare('INSERT INTO posts (title, body) VALUES (?, ?)')

const fastify = Fastify({ logger: true })

await fastify.register(backup, {
  database: db, // never closed by the plugin: we close it below, after fastify.close()
  destination: join(dataDir, 'backups'),
  interval: '30s',
  runOnStart: true,
  keep: 10,
  // Every commit shipped within a second; restore --at any moment since the oldest kept backup.
  continuous: true
})

// Simulated traffic: a new post every 200 ms, for as long as the app runs.
let written = 0
const writer = setInterval(() => insertPost.run(`post ${++written}`, 'written by the timer'), 200).unref()
fastify.addHook('onClose', async () => clearInterval(writer))

fastify.post('/posts', {
  schema: {
    body: {
      type: 'object',
      required: ['title'],
      properties: {
        title: { type: 'string', minLength: 1, maxLength: 200 },
        body: { type: 'string', maxLength: 10000 }
      }
    }
  }
}, async (request, reply) => {
  const { lastInsertRowid } = insertPost.run(request.body.title, request.body.body ?? '')
  // The client hears "created" only once the post is stored in the backups.
  await fastify.backup.sync()
  return reply.code(201).send({ id: Number(lastInsertRowid) })
})

// Resolves once a backup holding every post committed before this request is on disk.
fastify.post('/backup', {
  schema: {
    querystring: {
      type: 'object',
      properties: { force: { type: 'boolean', default: false } }
    }
  }
}, async (request) => fastify.backup.now({ force: request.query.force }))

fastify.get('/backup/status', async () => fastify.backup.status())

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    fastify.log.info({ signal }, 'shutting down')
    // Stops the schedule and lets the backup in flight finish (or aborts it after closeTimeout).
    // If closing fails, the rejection is unhandled and the process exits with code 1.
    await fastify.close()
    db.close()
    process.exit(0)
  })
}

await fastify.listen({ port: Number(process.env.PORT ?? 3000), host: process.env.HOST ?? '127.0.0.1' })
