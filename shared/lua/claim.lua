-- Claim an admission (admitted -> active) or keep a session alive.
-- ARGV: room, position_id, mode ('claim': only from admitted; 'touch': claim or extend a session)
-- Extending a session moves its deadline in steps (see session_step), each an `extended`
-- event, so a recovery keeps long visits. A session never lasts past max_session from its
-- start (see session_end).
local position_id, mode = ARGV[2], ARGV[3]
local cfg, err = room_for_change()
if not cfg then
  return err
end
local p = get_person(position_id)
if not p then
  return fail('position_not_found')
end
local now = now_ms()
if p.state == 'admitted' then
  if p.claim_deadline < now then
    return fail('admission_expired')
  end
  mark_active(position_id, p, now, session_end(p, cfg, now))
  emit(cfg.inc, 'activated', position_id, { session_deadline = p.session_deadline }, now)
elseif p.state == 'active' then
  if mode == 'claim' then
    return fail('already_claimed')
  end
  local deadline = session_step(p, cfg, now)
  if deadline then
    extend_session(position_id, p, deadline)
    emit(cfg.inc, 'extended', position_id, { session_deadline = deadline }, now)
  end
elseif p.state == 'waiting' then
  return fail('not_admitted')
else
  return fail('session_ended')
end
return view(position_id, p, cfg, now, false)
