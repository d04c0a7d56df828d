-- The record of a stage's job of a document, created queued the first time it is asked for
-- (records.py `next_job`), in one step: asking again (a retried stage enqueueing its successor)
-- gives the same job. Returns {1, the job's record as HGETALL's field/value list}; {0} when it
-- needs a candidate id (stage_job); nil if the document is gone (deleted).
--!include store/stage_job.inc.lua
local document = KEYS[1]         -- hash: the document, whose `{stage}_job` names the job
local jobs_by_update = KEYS[2]   -- zset
local field = ARGV[1]            -- '{stage}_job'
local candidate = ARGV[2]        -- '', or a job id no job has (from the shared counter)
local job_prefix = ARGV[3]       -- the tenant's job key without the id (TenantKeys.job_prefix)
local updated_ms = ARGV[4]
local JOB_FIRST = 5              -- the new job's field/value items, without its id, to the end

if redis.call('EXISTS', document) == 0 then return false end
local job = stage_job(document, jobs_by_update, field, candidate, job_prefix, updated_ms,
                      JOB_FIRST, #ARGV)
if not job then return {0} end
return {1, job}
