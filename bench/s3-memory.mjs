// Peak memory of one backup uploaded to S3, for a database of --size MB (default 1000): the snapshot is staged
// locally, then streamed through gzip into a multipart upload. Needs the test server (`.ci/s3-server start`), whose
// endpoint and keys are in .ci/s3.env. Prints the app process's VmHWM growth and the upload's duration.
import { readFileSync, rmSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { S3Client, CreateBucketCommand, ListObjectsV2Command, DeleteObjectCommand } from '@aws-sdk/client-s3'
import Fastify from 'fastify'
import backup from 'fastify-sqlite-backup'
import { ensureDatabase, fileSize } from './lib/database.mjs'
import { peakRss } from './lib/memory.mjs'
import { SCRATCH_DIR, ensureDirs } from './lib/paths.mjs'

const { values } = parseArgs({ options: { size: { type: 'string', default: '1000' }, compression: { type: 'string', default: 'gzip' } } })
const env = Object.fromEntries(readFileSync(new URL('../.ci/s3.env', import.meta.url), 'utf8').trim().split('\n').map((line) => line.split('=')))
const credentials = { accessKeyId: env.S3_ACCESS_KEY_ID, secretAccessKey: env.S3_SECRET_ACCESS_KEY }

ensureDirs()
const database = ensureDatabase(Number(values.size), 'wal', (line) => console.error(`[s3-memory] ${line}`))
const staging = join(SCRATCH_DIR, 's3-staging')
rmSync(staging, { recursive: true, force: true })
mkdirSync(staging, { mode: 0o700 })
const bucket = `bench-${Date.now()}`
const client = new S3Client({ region: env.S3_REGION, endpoint: env.S3_ENDPOINT, forcePathStyle: true, credentials })
await client.send(new CreateBucketCommand({ Bucket: bucket }))

const app = Fastify()
await app.register(backup, {
  database,
  destination: { type: 's3', bucket, region: env.S3_REGION, endpoint: env.S3_ENDPOINT, forcePathStyle: true, credentials, compression: values.compression },
  staging,
  interval: false
})
await app.ready()
const before = peakRss()
const started = Date.now()
const result = await app.backup.now({ force: true })
const after = peakRss()
await app.close()
rmSync(staging, { recursive: true, force: true })
// The test server keeps objects in memory: what was uploaded is deleted.
for (const { Key } of (await client.send(new ListObjectsV2Command({ Bucket: bucket }))).Contents ?? []) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key }))
client.destroy()

const mib = (bytes) => `${(bytes / 2 ** 20).toFixed(1)} MiB`
console.log('| database | stored | compression | upload + snapshot | peak memory growth (VmHWM) |')
console.log('|---|---|---|---|---|')
console.log(`| ${mib(fileSize(database))} | ${mib(result.metadata.storedBytes ?? result.bytes)} | ${values.compression} | ${Date.now() - started} ms | ${mib(after - before)} (peak ${mib(after)}) |`)
