-- The scripted peer of PRESENCE.HEARTBEAT user device (layout: see online.lua).
-- A connected device moves its deadline; an unknown or expired one is registered as online.lua
-- does. ARGV: user, device, ttl (ms), retention (ms). Reply: 1 if connected, 0 if registered.
local user, device = ARGV[1], ARGV[2]
local ttl, retention = tonumber(ARGV[3]), tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dkey = 'lua:dev:{' .. user .. '}'
local ukey = 'lua:user:{' .. user .. '}'
local deadline = now + ttl

local old = redis.call('HGET', dkey, device)
if old and tonumber(old) > now then
  redis.call('HSET', dkey, device, deadline)
  if redis.call('PEXPIRETIME', dkey) < deadline + retention then
    redis.call('PEXPIREAT', dkey, deadline + retention)
  end
  redis.call('ZADD', 'lua:due', deadline, user .. '\n' .. device)
  redis.call('HSET', ukey, 'last_seen', now)
  return 1
end

local devices = redis.call('HGETALL', dkey)
local others = 0
for i = 1, #devices, 2 do
  if devices[i] ~= device and tonumber(devices[i + 1]) > now then others = others + 1 end
end
redis.call('HSET', dkey, device, deadline)
if redis.call('PEXPIRETIME', dkey) < deadline + retention then
  redis.call('PEXPIREAT', dkey, deadline + retention)
end
redis.call('ZADD', 'lua:due', deadline, user .. '\n' .. device)
if others == 0 then
  local seq = redis.call('HINCRBY', ukey, 'seq', 1)
  redis.call('HSET', ukey, 'status', 'online', 'since', now, 'last_seen', now)
  redis.call('PERSIST', ukey)
  redis.call('ZADD', 'lua:online', now, user)
  redis.call('PUBLISH', 'lua:events', cjson.encode({
    user = user, status = 'online', prev = 'offline', reason = 'connect', device = device,
    devices = 1, last_seen = now, ts = now, seq = seq }))
else
  redis.call('HSET', ukey, 'last_seen', now)
end
return 0
