-- The due jobs whose in-progress mark names a worker with no sign of life (liveness.py `reap`):
-- {job id, owner} pairs. Marks holding '1' (arq's own, from a worker that is not docpulse's) are
-- left to expire. The marks' and the owners' keys are named from the queue, not declared: like
-- arq's own keys, they are not under one hash tag (arq does not run on a Redis Cluster).
local queue = KEYS[1]            -- zset: arq's queue, job ids by when they are due (ms)
local mark_prefix = ARGV[1]      -- arq's in-progress key prefix
local worker_prefix = ARGV[2]    -- a worker's sign of life: worker_prefix .. id .. ':alive'
local now_ms = ARGV[3]
local scan = ARGV[4]             -- due jobs to look at, oldest first

local found = {}
for _, job_id in ipairs(redis.call('ZRANGEBYSCORE', queue, '-inf', now_ms, 'LIMIT', 0, scan)) do
  local owner = redis.call('GET', mark_prefix .. job_id)
  if owner and owner ~= '1' and redis.call('EXISTS', worker_prefix .. owner .. ':alive') == 0 then
    table.insert(found, {job_id, owner})
  end
end
return found
