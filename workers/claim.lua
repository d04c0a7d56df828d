-- Take a due job for this worker (liveness.py `claim`): arq's in-progress mark, set as arq's
-- start_jobs sets it, but holding the worker's id (arq writes '1'), in one step. Returns the
-- job's score (when it was due, ms), or false when another worker's mark is on it, or it is
-- gone or not yet due. A mark of this worker's own is taken again: a claim resent after a lost
-- reply finds the mark it set (the worker skips jobs it is running).
local mark = KEYS[1]             -- string: arq's in-progress mark of the job
local queue = KEYS[2]            -- zset: arq's queue
local job_id = ARGV[1]
local worker_id = ARGV[2]
local mark_ttl_ms = ARGV[3]      -- arq's in_progress_timeout_s, in ms
local now_ms = tonumber(ARGV[4])

local owner = redis.call('GET', mark)
if owner and owner ~= worker_id then return false end
local score = redis.call('ZSCORE', queue, job_id)
if not score or tonumber(score) > now_ms then return false end
redis.call('SET', mark, worker_id, 'PX', mark_ttl_ms)
return score
