-- One rate-limit decision for one channel, atomically: GCRA as governor computes it in-process.
-- KEYS[1]  the channel's key; it holds the theoretical arrival time (TAT), µs of Redis's clock
-- ARGV[1]  emission interval t: µs between two calls at the sustained rate
-- ARGV[2]  tolerance tau = t × (burst − 1), µs
-- Returns 0 when the call is allowed (and spends it), otherwise the µs to wait before a call
-- can be allowed (nothing is spent).
--
-- The time is Redis's own (TIME), so the replicas' clocks do not matter. The key expires when
-- its TAT has passed: a missing key and a TAT in the past mean the same, a full burst.
if redis.replicate_commands then
  -- Redis 3.2 to 4 replicate the effects of a script that reads TIME only when asked to.
  redis.replicate_commands()
end
local t = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then
  tat = now
end
local earliest = tat - tau
if now < earliest then
  return earliest - now
end
local next_tat = tat + t
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', math.ceil((next_tat - now) / 1000) + 1)
return 0
