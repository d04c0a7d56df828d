-- Put a retried job back on arq's queue as its next attempt (store/arq_jobs.py `requeue`, from a
-- retry or the sweeper), once per attempt: arq's try counter set to the attempts that ran (arq
-- INCRs it as a try starts, so the next try is the next attempt), the last attempt's result and
-- abort entry dropped, and the job written as arq's `enqueue_job` writes it. Runs on the queue's
-- server: its keys are arq's, and docpulse's marker of the attempt last put back beside them.
-- Returns 1 (queued), 0 (this attempt was queued already: a no-op), or -1 (the job's last
-- attempt still holds its in-progress mark: nothing done, try again later).
local job_key = KEYS[1]          -- arq's job key: the serialized job
local result_key = KEYS[2]       -- arq's result key of the same job id
local retry_key = KEYS[3]        -- arq's try counter of the job
local mark = KEYS[4]             -- arq's in-progress mark of the job
local abort_set = KEYS[5]        -- arq's abort set (zset of arq job ids)
local queue = KEYS[6]            -- zset: the queue, scored by when a job is due (ms)
local requeued = KEYS[7]         -- string: the attempt the job was last put back for
local job_id = ARGV[1]
local payload = ARGV[2]
local score_ms = ARGV[3]
local expires_ms = ARGV[4]
local ran = ARGV[5]              -- the attempts that ran before the retry
local attempt = tonumber(ARGV[6])  -- the attempt it goes back for
local KEEP_S = 88400             -- arq's own expiry of its try counter

if tonumber(redis.call('GET', requeued) or '0') >= attempt then return 0 end
if redis.call('EXISTS', mark) == 1 then return -1 end
redis.call('ZREM', abort_set, job_id)
redis.call('DEL', result_key)
redis.call('SET', retry_key, ran, 'EX', KEEP_S)
redis.call('SET', job_key, payload, 'PX', expires_ms)
redis.call('ZADD', queue, score_ms, job_id)
redis.call('SET', requeued, attempt, 'EX', KEEP_S)
return 1
