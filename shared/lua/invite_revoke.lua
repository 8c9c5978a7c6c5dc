-- Revoke an invite: joins with it are refused from now on (places already taken with it
-- stay). Revoking twice changes nothing. ARGV: room, invite_id. Answers the record.
local invite_id = ARGV[2]
local cfg, err = room_for_change()
if not cfg then
  return err
end
local invite = get_invite(invite_id)
if not invite then
  return fail('invite_not_found')
end
if not invite.revoked then
  invite.revoked = true
  put_invite(invite_id, invite)
  emit(cfg.inc, 'invite_revoked', nil, { invite_id = invite_id }, now_ms())
end
return cjson.encode(invite)
