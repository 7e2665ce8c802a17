// Sampling from outside the app, so that measuring does not load the process measured: the WAL file's size every
// 50 ms, a process's resident memory every second (from /proc; Linux only, as machine.mjs).
import { statSync, readFileSync } from 'node:fs'

/** The WAL's size (0 when there is none) every `everyMs`; stop() returns its largest, its last, and per-second maxima. */
export function sampleWalSize (walPath, everyMs = 50) {
  const started = performance.now()
  const perSecond = []
  let largest = 0
  let last = 0
  let samples = 0
  const sample = () => {
    let size = 0
    try {
      size = statSync(walPath).size
    } catch (err) {
      if (err.code !== 'ENOENT') throw err
    }
    samples++
    last = size
    if (size > largest) largest = size
    const second = Math.floor((performance.now() - started) / 1000)
    perSecond[second] = Math.max(perSecond[second] ?? 0, size)
  }
  sample()
  // Unref'd: a round that fails before stopping it must not keep the benchmark alive.
  const timer = setInterval(sample, everyMs).unref()
  return {
    stop () {
      clearInterval(timer)
      sample()
      return { maxBytes: largest, lastBytes: last, samples, perSecondMaxBytes: Array.from(perSecond, (v) => v ?? null) }
    }
  }
}

/** Resident set size of a process, in bytes (null once it is gone). */
export function rssOf (pid) {
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return match ? Number(match[1]) * 1024 : null
  } catch {
    return null
  }
}

/** `pid`'s RSS every `everyMs`, from now; stop() returns the samples as { s (seconds from the start), bytes }. */
export function sampleRss (pid, everyMs = 1000) {
  const started = performance.now()
  const samples = []
  const sample = () => {
    const bytes = rssOf(pid)
    if (bytes !== null) samples.push({ s: (performance.now() - started) / 1000, bytes })
  }
  sample()
  const timer = setInterval(sample, everyMs).unref()
  return {
    stop () {
      clearInterval(timer)
      sample()
      return samples
    }
  }
}

/**
 * Start, largest, end, and the least-squares slope in MB per minute of RSS samples: over the whole window, and over
 * its second half (a process still warming up, caches filling, grows early and then levels off).
 */
export function summarizeRss (samples) {
  if (samples.length === 0) return { startMb: null, maxMb: null, endMb: null, slopeMbPerMin: null, lateSlopeMbPerMin: null, samples: 0 }
  const mb = (bytes) => bytes / 1024 / 1024
  const points = (list) => list.map((sample) => [sample.s / 60, mb(sample.bytes)])
  return {
    startMb: mb(samples[0].bytes),
    maxMb: mb(Math.max(...samples.map((sample) => sample.bytes))),
    endMb: mb(samples.at(-1).bytes),
    slopeMbPerMin: leastSquaresSlope(points(samples)),
    lateSlopeMbPerMin: leastSquaresSlope(points(samples.slice(Math.floor(samples.length / 2)))),
    samples: samples.length
  }
}

/** Slope of the least-squares line through [x, y] points; null with fewer than two distinct x. */
export function leastSquaresSlope (points) {
  const n = points.length
  if (n < 2) return null
  const meanX = points.reduce((sum, [x]) => sum + x, 0) / n
  const meanY = points.reduce((sum, [, y]) => sum + y, 0) / n
  let sxy = 0
  let sxx = 0
  for (const [x, y] of points) {
    sxy += (x - meanX) * (y - meanY)
    sxx += (x - meanX) ** 2
  }
  return sxx === 0 ? null : sxy / sxx
}
