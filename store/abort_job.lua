-- Ask arq to stop a cancelled job (store/arq_jobs.py `abort`): its arq id into arq's abort set,
-- unless a retry has already put a later attempt of it back on the queue (store/requeue_job.lua
-- notes which), since that attempt must run: a cancel's abort sent late, after a quick retry,
-- would otherwise stop it. Runs on the queue's server. Returns 1 (sent) or 0.
local abort_set = KEYS[1]        -- arq's abort set (zset of arq job ids, by time)
local requeued = KEYS[2]         -- string: the attempt the job was last put back for
local job_id = ARGV[1]
local now_ms = ARGV[2]
local attempt = tonumber(ARGV[3])  -- the attempt that was cancelled

if tonumber(redis.call('GET', requeued) or '0') > attempt then return 0 end
redis.call('ZADD', abort_set, now_ms, job_id)
return 1
