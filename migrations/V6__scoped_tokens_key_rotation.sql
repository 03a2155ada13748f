-- Tokens with scopes, sites and an expiry; reader keys that rotate with a grace period;
-- readers bound to a client certificate.
--
-- - An admin token (`lat_…`) now has scopes (`admin` is all of them), an optional list of
--   sites it may act on and read (NULL: every site) and an optional expiry. Tokens made
--   before this migration keep `admin` on every site, without expiry. A token past its
--   expiry is refused like a revoked one, at its next request: nothing caches a token.
-- - The administrative functions of V5 check, besides the token, that it holds the scope
--   the change needs and covers the site it touches, and answer `forbidden` otherwise; so
--   the API's login cannot stretch a narrow token either.
-- - A reader has, beside its key, the key it had before its last rotation and until when
--   that one still works (`previous_key_hash`, `previous_key_until`). Each rotation is an
--   action (`reader_key_rotated`) naming both keys by the start of their hashes.
-- - A reader may be bound to a client certificate (`client_cert_sha256`, its SHA-256): the
--   API then finds it only when its key comes over a TLS connection that presented that
--   certificate. `latch_enrol_reader` takes it as a new last argument.

ALTER TABLE admins
    ADD COLUMN scopes text[] NOT NULL DEFAULT ARRAY['admin']
        CHECK (cardinality(scopes) BETWEEN 1 AND 16
               AND scopes <@ ARRAY['admin', 'sites:read', 'sites:write', 'access:write',
                                   'registry:read', 'events:read']),
    ADD COLUMN sites text[] CHECK (sites IS NULL OR cardinality(sites) BETWEEN 1 AND 100),
    ADD COLUMN expires_at timestamptz;

ALTER TABLE readers
    ADD COLUMN previous_key_hash bytea UNIQUE,
    ADD COLUMN previous_key_until timestamptz,
    ADD CHECK ((previous_key_hash IS NULL) = (previous_key_until IS NULL)),
    ADD COLUMN client_cert_sha256 bytea CHECK (octet_length(client_cert_sha256) = 32);

-- A token that is neither revoked nor expired.
CREATE OR REPLACE FUNCTION latch_admin_id(p_token bytea) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT id FROM admins
    WHERE token_hash = p_token AND revoked_at IS NULL
      AND (expires_at IS NULL OR expires_at > now())
$$;

-- True if the (valid) token holds `p_scope` (or `admin`) and covers `p_site`; a NULL site
-- (holders, who belong to no one site) is covered only by a token for every site.
CREATE FUNCTION latch_token_allows(p_token bytea, p_scope text, p_site text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT EXISTS (
        SELECT 1 FROM admins
        WHERE token_hash = p_token AND revoked_at IS NULL
          AND (expires_at IS NULL OR expires_at > now())
          AND ('admin' = ANY (scopes) OR p_scope = ANY (scopes))
          AND (sites IS NULL OR p_site = ANY (sites))
    )
$$;

CREATE OR REPLACE FUNCTION latch_create_door(p_token bytea, p_action uuid, p_trace text,
                                             p_id uuid, p_site text, p_name text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    actor uuid := latch_admin_id(p_token);
BEGIN
    IF actor IS NULL THEN RETURN 'unauthorized'; END IF;
    IF NOT latch_token_allows(p_token, 'sites:write', p_site) THEN RETURN 'forbidden'; END IF;
    INSERT INTO doors (id, site, name) VALUES (p_id, p_site, p_name)
        ON CONFLICT (site, name) DO NOTHING;
    IF NOT FOUND THEN RETURN 'conflict'; END IF;
    PERFORM latch_record_admin_action(p_action, 'door_created', actor, p_trace, p_site,
                                      p_door => p_id);
    RETURN 'done';
END
$$;

CREATE OR REPLACE FUNCTION latch_create_holder(p_token bytea, p_action uuid, p_trace text,
                                               p_id uuid, p_card text, p_name text)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    actor uuid := latch_admin_id(p_token);
BEGIN
    IF actor IS NULL THEN RETURN 'unauthorized'; END IF;
    IF NOT latch_token_allows(p_token, 'access:write', NULL) THEN RETURN 'forbidden'; END IF;
    INSERT INTO holders (id, card_id, name) VALUES (p_id, p_card, p_name)
        ON CONFLICT (card_id) DO NOTHING;
    IF NOT FOUND THEN RETURN 'conflict'; END IF;
    PERFORM latch_record_admin_action(p_action, 'holder_created', actor, p_trace, NULL,
                                      p_holder => p_id);
    RETURN 'done';
END
$$;

CREATE OR REPLACE FUNCTION latch_update_holder(p_token bytea, p_action uuid, p_trace text,
                                               p_id uuid, p_active boolean, p_name text)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    actor uuid := latch_admin_id(p_token);
BEGIN
    IF actor IS NULL THEN RETURN 'unauthorized'; END IF;
    IF NOT latch_token_allows(p_token, 'access:write', NULL) THEN RETURN 'forbidden'; END IF;
    UPDATE holders SET active = COALESCE(p_active, active), name = COALESCE(p_name, name)
        WHERE id = p_id;
    IF NOT FOUND THEN RETURN 'not_found'; END IF;
    PERFORM latch_record_admin_action(p_action, 'holder_updated', actor, p_trace, NULL,
                                      p_holder => p_id);
    RETURN 'done';
END
$$;

DROP FUNCTION latch_enrol_reader(bytea, uuid, text, uuid, uuid, text, bytea, bigint);
CREATE FUNCTION latch_enrol_reader(p_token bytea, p_action uuid, p_trace text,
                                   p_id uuid, p_door uuid, p_name text,
                                   p_key_hash bytea, p_offline_after_secs bigint,
                                   p_client_cert bytea)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    actor uuid := latch_admin_id(p_token);
    door_site text;
BEGIN
    IF actor IS NULL THEN RETURN 'unauthorized'; END IF;
    SELECT site INTO door_site FROM doors WHERE id = p_door FOR KEY SHARE;
    IF NOT FOUND THEN RETURN 'door_not_found'; END IF;
    IF NOT latch_token_allows(p_token, 'sites:write', door_site) THEN RETURN 'forbidden'; END IF;
    INSERT INTO readers (id, door_id, name, key_hash, offline_after, client_cert_sha256)
    VALUES (p_id, p_door, p_name, p_key_hash,
            COALESCE(p_offline_after_secs * interval '1 second', interval '5 minutes'),
            p_client_cert);
    PERFORM latch_record_admin_action(p_action, 'reader_enrolled', actor, p_trace, door_site,
                                      p_door => p_door, p_reader => p_id);
    RETURN 'done';
END
$$;

CREATE OR REPLACE FUNCTION latch_disable_reader(p_token bytea, p_action uuid, p_trace text,
                                                p_id uuid) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    actor uuid := latch_admin_id(p_token);
    was_enabled boolean;
    reader_door uuid;
    door_site text;
BEGIN
    IF actor IS NULL THEN RETURN 'unauthorized'; END IF;
    SELECT r.enabled, r.door_id, d.site INTO was_enabled, reader_door, door_site
        FROM readers r JOIN doors d ON d.id = r.door_id WHERE r.id = p_id FOR UPDATE OF r;
    IF NOT FOUND THEN RETURN 'not_found'; END IF;
    IF NOT latch_token_allows(p_token, 'sites:write', door_site) THEN RETURN 'forbidden'; END IF;
    IF NOT was_enabled THEN RETURN 'already'; END IF;
    UPDATE readers SET enabled = false, disabled_at = now() WHERE id = p_id;
    PERFORM latch_record_admin_action(p_action, 'reader_disabled', actor, p_trace, door_site,
                                      p_door => reader_door, p_reader => p_id);
    RETURN 'done';
END
$$;

CREATE OR REPLACE FUNCTION latch_create_grant(p_token bytea, p_action uuid, p_trace text,
                                              p_id uuid, p_holder uuid, p_door uuid,
                                              p_valid_from timestamptz,
                                              p_valid_until timestamptz) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    actor uuid := latch_admin_id(p_token);
    door_site text;
BEGIN
    IF actor IS NULL THEN RETURN 'unauthorized'; END IF;
    SELECT site INTO door_site FROM doors WHERE id = p_door FOR KEY SHARE;
    IF NOT FOUND THEN RETURN 'door_not_found'; END IF;
    IF NOT latch_token_allows(p_token, 'access:write', door_site) THEN RETURN 'forbidden'; END IF;
    PERFORM FROM holders WHERE id = p_holder FOR KEY SHARE;
    IF NOT FOUND THEN RETURN 'holder_not_found'; END IF;
    INSERT INTO grants (id, holder_id, door_id, valid_from, valid_until, granted_by)
    VALUES (p_id, p_holder, p_door, p_valid_from, p_valid_until, actor);
    PERFORM latch_record_admin_action(p_action, 'grant_created', actor, p_trace, door_site,
                                      p_door => p_door, p_holder => p_holder, p_grant => p_id);
    RETURN 'done';
END
$$;

CREATE OR REPLACE FUNCTION latch_revoke_grant(p_token bytea, p_action uuid, p_trace text,
                                              p_id uuid) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    actor uuid := latch_admin_id(p_token);
    revoked timestamptz;
    grant_holder uuid;
    grant_door uuid;
    door_site text;
BEGIN
    IF actor IS NULL THEN RETURN 'unauthorized'; END IF;
    SELECT g.revoked_at, g.holder_id, g.door_id, d.site
        INTO revoked, grant_holder, grant_door, door_site
        FROM grants g JOIN doors d ON d.id = g.door_id WHERE g.id = p_id FOR UPDATE OF g;
    IF NOT FOUND THEN RETURN 'not_found'; END IF;
    IF NOT latch_token_allows(p_token, 'access:write', door_site) THEN RETURN 'forbidden'; END IF;
    IF revoked IS NOT NULL THEN RETURN 'already'; END IF;
    UPDATE grants SET revoked_at = now(), revoked_by = actor WHERE id = p_id;
    PERFORM latch_record_admin_action(p_action, 'grant_revoked', actor, p_trace, door_site,
                                      p_door => grant_door, p_holder => grant_holder,
                                      p_grant => p_id);
    RETURN 'done';
END
$$;

-- Gives a reader a new key; the one it had works on until now + the grace period (0: not
-- at all). A key the reader had before that is forgotten.
CREATE FUNCTION latch_rotate_reader_key(p_token bytea, p_action uuid, p_trace text,
                                        p_id uuid, p_key_hash bytea, p_grace_secs bigint)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    actor uuid := latch_admin_id(p_token);
    was_enabled boolean;
    old_hash bytea;
    reader_door uuid;
    door_site text;
    until timestamptz := now() + make_interval(secs => GREATEST(p_grace_secs, 0));
BEGIN
    IF actor IS NULL THEN RETURN 'unauthorized'; END IF;
    SELECT r.enabled, r.key_hash, r.door_id, d.site
        INTO was_enabled, old_hash, reader_door, door_site
        FROM readers r JOIN doors d ON d.id = r.door_id WHERE r.id = p_id FOR UPDATE OF r;
    IF NOT FOUND THEN RETURN 'not_found'; END IF;
    IF NOT latch_token_allows(p_token, 'sites:write', door_site) THEN RETURN 'forbidden'; END IF;
    IF NOT was_enabled THEN RETURN 'already'; END IF;
    UPDATE readers
        SET key_hash = p_key_hash,
            previous_key_hash = CASE WHEN p_grace_secs > 0 THEN old_hash END,
            previous_key_until = CASE WHEN p_grace_secs > 0 THEN until END
        WHERE id = p_id;
    PERFORM latch_record_admin_action(
        p_action, 'reader_key_rotated', actor, p_trace, door_site,
        p_door => reader_door, p_reader => p_id,
        p_reason => CASE WHEN p_grace_secs > 0
            THEN format('key sha256:%s replaced by sha256:%s; the old key works until %s',
                        left(encode(old_hash, 'hex'), 16), left(encode(p_key_hash, 'hex'), 16),
                        to_char(until AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
            ELSE format('key sha256:%s replaced by sha256:%s at once',
                        left(encode(old_hash, 'hex'), 16), left(encode(p_key_hash, 'hex'), 16))
        END);
    RETURN 'done';
END
$$;

-- Tokens, for the owner's login only. `latch_add_admin` (V5) still makes an all-powerful
-- token; this one says what the token may do.
CREATE FUNCTION latch_add_token(p_action uuid, p_id uuid, p_name text, p_token bytea,
                                p_scopes text[], p_sites text[], p_expires timestamptz)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO admins (id, name, token_hash, scopes, sites, expires_at)
    VALUES (p_id, p_name, p_token, p_scopes, p_sites, p_expires);
    PERFORM latch_record_admin_action(
        p_action, 'admin_created', NULL, NULL, NULL,
        p_reason => format('token %s (%s) with scopes %s, sites %s, expiring %s, added by database login %s',
                           p_id, p_name, array_to_string(p_scopes, ','),
                           COALESCE(array_to_string(p_sites, ','), 'all'),
                           COALESCE(p_expires::text, 'never'), session_user));
    RETURN 'done';
END
$$;

REVOKE ALL ON FUNCTION latch_token_allows(bytea, text, text),
    latch_enrol_reader(bytea, uuid, text, uuid, uuid, text, bytea, bigint, bytea),
    latch_rotate_reader_key(bytea, uuid, text, uuid, bytea, bigint),
    latch_add_token(uuid, uuid, text, bytea, text[], text[], timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION latch_rotate_reader_key(bytea, uuid, text, uuid, bytea, bigint),
    latch_enrol_reader(bytea, uuid, text, uuid, uuid, text, bytea, bigint, bytea)
    TO latch_app;
