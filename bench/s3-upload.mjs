// The app's event loop while one backup of --size MB (default 205) is uploaded to S3, and the upload's throughput
// beside a plain PutObject of the same file. Needs the test server (`.ci/s3-server start`); its endpoint and keys
// are in .ci/s3.env.
//
// Each round measures, for gzip, gzip + age and no compression:
//   - "event loop": the upload run on the app's own thread, as the plugin ran it before the upload thread;
//   - "upload thread": the destination's put(), as the plugin runs it;
// and once a plain PutObject of the file's bytes (a Buffer), the SDK's simplest upload. Beside each, a process that
// does nothing but watch its own event loop over the same time: on a small machine that also runs the S3 server,
// that is the delay the machine itself gives any process, which no change in the plugin can go under.
import { readFileSync, rmSync, copyFileSync } from 'node:fs'
import { join } from 'node:path'
import { createRequire } from 'node:module'
import { parseArgs } from 'node:util'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { S3Client, CreateBucketCommand, PutObjectCommand, ListObjectsV2Command, DeleteObjectCommand } from '@aws-sdk/client-s3'
import { generateIdentity, identityToRecipient } from 'age-encryption'
import { ensureDatabase, fileSize } from './lib/database.mjs'
import { startIdleLoop } from './lib/idle-loop.mjs'
import { median, max } from './lib/stats.mjs'
import { SCRATCH_DIR, ensureDirs } from './lib/paths.mjs'
import { describeMachine } from './lib/machine.mjs'

const require = createRequire(import.meta.url)
const { S3BucketDestination } = require('../dist/destinations/s3.js')
const { resolveS3 } = require('../dist/destinations/s3-options.js')
const { uploadTask } = require('../dist/destinations/s3-upload.js')

const { values } = parseArgs({ options: { size: { type: 'string', default: '205' }, runs: { type: 'string', default: '2' } } })
const env = Object.fromEntries(readFileSync(new URL('../.ci/s3.env', import.meta.url), 'utf8').trim().split('\n').map((line) => line.split('=')))
const credentials = { accessKeyId: env.S3_ACCESS_KEY_ID, secretAccessKey: env.S3_SECRET_ACCESS_KEY }
const server = { region: env.S3_REGION, endpoint: env.S3_ENDPOINT, forcePathStyle: true, credentials }

ensureDirs()
const database = ensureDatabase(Number(values.size), 'wal', (line) => console.error(`[s3-upload] ${line}`))
// The upload reads a closed file, as it reads a staged snapshot.
const file = join(SCRATCH_DIR, 's3-upload.sqlite')
copyFileSync(database, file)
const bytes = fileSize(file)
const client = new S3Client(server)
const bucket = `bench-upload-${Date.now()}`
await client.send(new CreateBucketCommand({ Bucket: bucket }))
const recipient = await identityToRecipient(await generateIdentity())

const destinations = new Map()
function destination (mode) {
  if (!destinations.has(mode)) {
    destinations.set(mode, new S3BucketDestination(resolveS3({
      type: 's3', bucket, ...server, prefix: `${mode}/`, compression: mode === 'none' ? 'none' : 'gzip', ...(mode === 'gzip+age' && { encryption: { recipient } })
    }, 'destination')))
  }
  return destinations.get(mode)
}

let nextId = 0
const backupId = () => `20260101T000000000Z-${(nextId++).toString(16).padStart(8, '0')}`

const variants = [
  ...['gzip', 'gzip+age', 'none'].flatMap((mode) => [
    { mode, where: 'event loop', upload: (path) => uploadTask({ client: server, bucket, key: `loop/${backupId()}`, file: path, gzip: mode !== 'none', recipient: mode === 'gzip+age' ? recipient : undefined, partSize: 8 * 2 ** 20, queueSize: 2 }, null, new AbortController().signal) },
    { mode, where: 'upload thread', upload: (path) => destination(mode).put(path, { id: backupId(), bytes, sha256: 'x' }, new AbortController().signal) }
  ]),
  { mode: 'none', where: 'plain PutObject', upload: (path) => client.send(new PutObjectCommand({ Bucket: bucket, Key: `put/${backupId()}`, Body: readFileSync(path) })) }
]

// Warm-up: modules loaded, the upload thread started, a connection open, for every variant.
const small = join(SCRATCH_DIR, 's3-upload-small.bin')
copyFileSync(ensureDatabase(1, 'wal', () => {}), small)
for (const variant of variants) await variant.upload(small)

const results = variants.map(() => [])
for (let round = 0; round < Number(values.runs); round++) {
  for (const [index, variant] of variants.entries()) {
    results[index].push(await measure(variant))
    await emptyBucket()
  }
}
for (const destination of destinations.values()) await destination.close()
client.destroy()
rmSync(file, { force: true })
rmSync(small, { force: true })

async function measure (variant) {
  const idle = await startIdleLoop()
  idle.watch()
  const delay = monitorEventLoopDelay({ resolution: 1 })
  delay.enable()
  const utilization = performance.eventLoopUtilization()
  const started = performance.now()
  await variant.upload(file)
  const durationMs = performance.now() - started
  const activeMs = performance.eventLoopUtilization(utilization).active
  delay.disable()
  const idleMaxMs = await idle.stop()
  return { durationMs, loopMaxMs: delay.max / 1e6, activeMs, idleMaxMs }
}

async function emptyBucket () {
  // The test server keeps objects in memory: each upload is deleted before the next.
  let token
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }))
    for (const { Key } of page.Contents ?? []) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key }))
    token = page.NextContinuationToken
  } while (token)
}

const ms = (value) => `${value.toFixed(1)} ms`
const machine = describeMachine()
console.log(`${(bytes / 2 ** 20).toFixed(1)} MiB file, ${values.runs} rounds (median, worst round in brackets); ${machine.cpus} CPUs, ${machine.node}`)
console.log('')
console.log('| upload | where | time | MiB/s | app loop longest delay | app loop busy | idle process longest delay (same time) |')
console.log('|---|---|---|---|---|---|---|')
for (const [index, { mode, where }] of variants.entries()) {
  const runs = results[index]
  const pick = (key) => runs.map((run) => run[key])
  const time = median(pick('durationMs'))
  console.log(`| ${mode} | ${where} | ${(time / 1000).toFixed(2)} s | ${(bytes / 2 ** 20 / (time / 1000)).toFixed(1)} | ${ms(median(pick('loopMaxMs')))} (${ms(max(pick('loopMaxMs')))}) | ${ms(median(pick('activeMs')))} | ${ms(median(pick('idleMaxMs')))} (${ms(max(pick('idleMaxMs')))}) |`)
}
