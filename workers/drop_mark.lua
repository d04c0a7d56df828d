-- Drop a job's in-progress mark if it names `owner` (liveness.py): compare and delete in one step,
-- so a mark another worker has taken since is left alone. Returns 1 if dropped, else 0.
local mark = KEYS[1]             -- string: arq's in-progress mark of the job
local owner = ARGV[1]            -- the worker id the mark must hold

if redis.call('GET', mark) == owner then return redis.call('DEL', mark) end
return 0
