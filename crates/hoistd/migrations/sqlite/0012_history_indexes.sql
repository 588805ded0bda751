-- hoistd schema, version 12: reads of one person's requests or grants of
-- one role no longer walk their whole history.
--
-- Filing reads the requester's open requests of the role, and approving
-- reads the requester's active grants of it (`Work::holding`). SQLite
-- chose the index by requester (or holder) alone for these, since its
-- order is the answer's, so each read went through every request or grant
-- the person ever had: slower for as long as hoistd runs. With the
-- answer's order at the end of these, they are the cheaper choice.
DROP INDEX requests_requester_role;
CREATE INDEX requests_requester_role ON requests (requester, role, created_at);
CREATE INDEX grants_holder_role ON grants (holder, role, state, starts_at);
