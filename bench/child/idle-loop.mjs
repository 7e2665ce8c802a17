// A process that does nothing but watch its own event loop: what the machine alone (CPU contention from every
// other process and thread) does to an event loop over the same time as a measurement. Sends its longest delay
// when it is sent 'stop'.
import { monitorEventLoopDelay } from 'node:perf_hooks'

const delay = monitorEventLoopDelay({ resolution: 1 })
process.on('message', (message) => {
  if (message.type === 'start') {
    delay.reset()
    delay.enable()
  } else if (message.type === 'stop') {
    delay.disable()
    process.send({ type: 'stopped', maxMs: delay.max / 1e6 }, () => process.exit(0))
  }
})
process.send({ type: 'ready' })
