-- Small sample of a Seafile server's three databases (ccnet, seafile, seahub) for the lab:
-- the real table names (a subset of the columns), including every table the real-time backup
-- procedure leaves out of replication and RepoUserToken (used when switching to the backup).
-- All InnoDB, as Seafile creates them. Loaded once by playbooks/lab_seafile_prepare.yml.
CREATE DATABASE IF NOT EXISTS ccnet_db CHARACTER SET utf8mb4;
CREATE DATABASE IF NOT EXISTS seafile_db CHARACTER SET utf8mb4;
CREATE DATABASE IF NOT EXISTS seahub_db CHARACTER SET utf8mb4;

USE ccnet_db;
CREATE TABLE EmailUser (id INT PRIMARY KEY AUTO_INCREMENT, email VARCHAR(255) UNIQUE, passwd VARCHAR(256),
  is_staff BOOL NOT NULL, is_active BOOL NOT NULL, ctime BIGINT) ENGINE=InnoDB;
CREATE TABLE `Group` (group_id BIGINT PRIMARY KEY AUTO_INCREMENT, group_name VARCHAR(255), creator_name VARCHAR(255),
  timestamp BIGINT, type VARCHAR(32), parent_group_id INT) ENGINE=InnoDB;
CREATE TABLE GroupUser (id BIGINT PRIMARY KEY AUTO_INCREMENT, group_id BIGINT, user_name VARCHAR(255), is_staff TINYINT,
  UNIQUE INDEX (group_id, user_name)) ENGINE=InnoDB;
CREATE TABLE UserRole (id BIGINT PRIMARY KEY AUTO_INCREMENT, email VARCHAR(255), role VARCHAR(255), UNIQUE INDEX (email)) ENGINE=InnoDB;
INSERT INTO EmailUser (email, passwd, is_staff, is_active, ctime) VALUES
  ('admin@example.org', 'PBKDF2SHA256$10000$x$y', 1, 1, 1700000000000000),
  ('alice@example.org', 'PBKDF2SHA256$10000$x$y', 0, 1, 1700000001000000),
  ('bob@example.org', 'PBKDF2SHA256$10000$x$y', 0, 1, 1700000002000000);
INSERT INTO `Group` (group_name, creator_name, timestamp, type, parent_group_id) VALUES ('staff', 'admin@example.org', 1700000003000000, NULL, 0);
INSERT INTO GroupUser (group_id, user_name, is_staff) VALUES (1, 'admin@example.org', 1), (1, 'alice@example.org', 0);
INSERT INTO UserRole (email, role) VALUES ('bob@example.org', 'guest');

USE seafile_db;
-- Library metadata: synced by the Seafile backup server itself (ignored by replication).
CREATE TABLE Repo (id BIGINT PRIMARY KEY AUTO_INCREMENT, repo_id CHAR(37), UNIQUE INDEX (repo_id)) ENGINE=InnoDB;
CREATE TABLE Branch (id BIGINT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(10), repo_id CHAR(41), commit_id CHAR(41),
  UNIQUE INDEX (repo_id, name)) ENGINE=InnoDB;
CREATE TABLE RepoHead (id BIGINT PRIMARY KEY AUTO_INCREMENT, repo_id CHAR(37), branch_name VARCHAR(10), UNIQUE INDEX (repo_id)) ENGINE=InnoDB;
-- Replicated.
CREATE TABLE RepoOwner (id BIGINT PRIMARY KEY AUTO_INCREMENT, repo_id CHAR(37), owner_id VARCHAR(255), UNIQUE INDEX (repo_id)) ENGINE=InnoDB;
CREATE TABLE RepoInfo (id BIGINT PRIMARY KEY AUTO_INCREMENT, repo_id CHAR(36), name VARCHAR(255) NOT NULL,
  update_time BIGINT, version INT, is_encrypted INT, last_modifier VARCHAR(255), UNIQUE INDEX (repo_id)) ENGINE=InnoDB;
CREATE TABLE RepoSize (id BIGINT PRIMARY KEY AUTO_INCREMENT, repo_id CHAR(37), size BIGINT UNSIGNED, head_id CHAR(41),
  UNIQUE INDEX (repo_id)) ENGINE=InnoDB;
CREATE TABLE RepoUserToken (id BIGINT PRIMARY KEY AUTO_INCREMENT, repo_id CHAR(37), email VARCHAR(255), token CHAR(41),
  UNIQUE INDEX (repo_id, token)) ENGINE=InnoDB;
CREATE TABLE SharedRepo (id BIGINT PRIMARY KEY AUTO_INCREMENT, repo_id CHAR(37), from_email VARCHAR(255), to_email VARCHAR(255),
  permission CHAR(15)) ENGINE=InnoDB;
INSERT INTO Repo (repo_id) VALUES ('f690ea2c-fe4d-459a-ba1e-165cdc6df391'), ('e2df70b5-cd80-496f-98cf-c9f038cf1307');
INSERT INTO Branch (name, repo_id, commit_id) VALUES
  ('master', 'f690ea2c-fe4d-459a-ba1e-165cdc6df391', 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678'),
  ('master', 'e2df70b5-cd80-496f-98cf-c9f038cf1307', 'b1b2c3d4e5f60718293a4b5c6d7e8f9012345678');
INSERT INTO RepoHead (repo_id, branch_name) VALUES ('f690ea2c-fe4d-459a-ba1e-165cdc6df391', 'master'),
  ('e2df70b5-cd80-496f-98cf-c9f038cf1307', 'master');
INSERT INTO RepoOwner (repo_id, owner_id) VALUES ('f690ea2c-fe4d-459a-ba1e-165cdc6df391', 'alice@example.org'),
  ('e2df70b5-cd80-496f-98cf-c9f038cf1307', 'bob@example.org');
INSERT INTO RepoInfo (repo_id, name, update_time, version, is_encrypted, last_modifier) VALUES
  ('f690ea2c-fe4d-459a-ba1e-165cdc6df391', 'Documents', 1700000100, 1, 0, 'alice@example.org'),
  ('e2df70b5-cd80-496f-98cf-c9f038cf1307', 'Photos', 1700000200, 1, 0, 'bob@example.org');
INSERT INTO RepoSize (repo_id, size, head_id) VALUES ('f690ea2c-fe4d-459a-ba1e-165cdc6df391', 1048576, 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678');
INSERT INTO RepoUserToken (repo_id, email, token) VALUES
  ('f690ea2c-fe4d-459a-ba1e-165cdc6df391', 'alice@example.org', '0123456789abcdef0123456789abcdef01234567'),
  ('e2df70b5-cd80-496f-98cf-c9f038cf1307', 'bob@example.org', '1123456789abcdef0123456789abcdef01234567');
INSERT INTO SharedRepo (repo_id, from_email, to_email, permission) VALUES
  ('f690ea2c-fe4d-459a-ba1e-165cdc6df391', 'alice@example.org', 'bob@example.org', 'r');

USE seahub_db;
-- Local or temporary tables of Seahub (ignored by replication).
CREATE TABLE base_userlastlogin (id INT PRIMARY KEY AUTO_INCREMENT, username VARCHAR(255), last_login DATETIME) ENGINE=InnoDB;
CREATE TABLE django_session (session_key VARCHAR(40) PRIMARY KEY, session_data LONGTEXT, expire_date DATETIME) ENGINE=InnoDB;
CREATE TABLE sysadmin_extra_userloginlog (id INT PRIMARY KEY AUTO_INCREMENT, username VARCHAR(255), login_date DATETIME,
  login_ip VARCHAR(128), login_success BOOL) ENGINE=InnoDB;
CREATE TABLE UserTrafficStat (email VARCHAR(255) PRIMARY KEY, month CHAR(6), block_download BIGINT, file_view BIGINT) ENGINE=InnoDB;
CREATE TABLE FileAudit (eid BIGINT PRIMARY KEY AUTO_INCREMENT, timestamp DATETIME, etype VARCHAR(128), user VARCHAR(255),
  ip VARCHAR(45), repo_id VARCHAR(36), file_path TEXT) ENGINE=InnoDB;
CREATE TABLE FileUpdate (eid BIGINT PRIMARY KEY AUTO_INCREMENT, timestamp DATETIME, user VARCHAR(255), repo_id VARCHAR(36),
  commit_id VARCHAR(40), file_oper TEXT) ENGINE=InnoDB;
CREATE TABLE PermAudit (eid BIGINT PRIMARY KEY AUTO_INCREMENT, timestamp DATETIME, etype VARCHAR(128), from_user VARCHAR(255),
  `to` VARCHAR(255), repo_id VARCHAR(36), file_path TEXT, permission VARCHAR(15)) ENGINE=InnoDB;
CREATE TABLE Event (uuid VARCHAR(36) PRIMARY KEY, etype VARCHAR(128), timestamp DATETIME, detail TEXT) ENGINE=InnoDB;
CREATE TABLE UserEvent (id BIGINT PRIMARY KEY AUTO_INCREMENT, org_id INT, user VARCHAR(255), eid VARCHAR(36)) ENGINE=InnoDB;
CREATE TABLE avatar_avatar (id INT PRIMARY KEY AUTO_INCREMENT, emailuser VARCHAR(255), `primary` BOOL, avatar VARCHAR(1024),
  date_uploaded DATETIME) ENGINE=InnoDB;
CREATE TABLE avatar_groupavatar (id INT PRIMARY KEY AUTO_INCREMENT, group_id VARCHAR(255), avatar VARCHAR(1024),
  date_uploaded DATETIME) ENGINE=InnoDB;
CREATE TABLE avatar_uploaded (filename TEXT, filename_md5 CHAR(32) PRIMARY KEY, data MEDIUMTEXT, size INT, mtime DATETIME) ENGINE=InnoDB;
-- Replicated.
CREATE TABLE profile_profile (id INT PRIMARY KEY AUTO_INCREMENT, user VARCHAR(254) UNIQUE, nickname VARCHAR(64), intro LONGTEXT,
  lang_code LONGTEXT) ENGINE=InnoDB;
CREATE TABLE share_fileshare (id INT PRIMARY KEY AUTO_INCREMENT, username VARCHAR(255), repo_id VARCHAR(36), path LONGTEXT,
  token VARCHAR(100) UNIQUE, ctime DATETIME, view_cnt INT, s_type VARCHAR(2)) ENGINE=InnoDB;
CREATE TABLE base_filecomment (id INT PRIMARY KEY AUTO_INCREMENT, author VARCHAR(255), comment LONGTEXT, created_at DATETIME,
  updated_at DATETIME) ENGINE=InnoDB;
INSERT INTO base_userlastlogin (username, last_login) VALUES ('alice@example.org', '2026-11-01 08:00:00');
INSERT INTO django_session VALUES ('k1session', 'e30=', '2026-12-01 00:00:00');
INSERT INTO sysadmin_extra_userloginlog (username, login_date, login_ip, login_success) VALUES
  ('alice@example.org', '2026-11-01 08:00:00', '192.0.2.10', 1);
INSERT INTO UserTrafficStat VALUES ('alice@example.org', '202611', 1024, 3);
INSERT INTO FileAudit (timestamp, etype, user, ip, repo_id, file_path) VALUES
  ('2026-11-01 08:01:00', 'file-download-web', 'alice@example.org', '192.0.2.10', 'f690ea2c-fe4d-459a-ba1e-165cdc6df391', '/a.txt');
INSERT INTO FileUpdate (timestamp, user, repo_id, commit_id, file_oper) VALUES
  ('2026-11-01 08:02:00', 'alice@example.org', 'f690ea2c-fe4d-459a-ba1e-165cdc6df391', 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678', 'Added a.txt');
INSERT INTO PermAudit (timestamp, etype, from_user, `to`, repo_id, file_path, permission) VALUES
  ('2026-11-01 08:03:00', 'add-repo-perm', 'alice@example.org', 'bob@example.org', 'f690ea2c-fe4d-459a-ba1e-165cdc6df391', '/', 'r');
INSERT INTO Event VALUES ('7d2b4c1e-0000-4000-8000-000000000001', 'repo-update', '2026-11-01 08:02:00', 'a.txt');
INSERT INTO UserEvent (org_id, user, eid) VALUES (-1, 'alice@example.org', '7d2b4c1e-0000-4000-8000-000000000001');
INSERT INTO avatar_avatar (emailuser, `primary`, avatar, date_uploaded) VALUES ('alice@example.org', 1, 'avatars/a.png', '2026-11-01 08:00:00');
INSERT INTO avatar_groupavatar (group_id, avatar, date_uploaded) VALUES ('1', 'avatars/g.png', '2026-11-01 08:00:00');
INSERT INTO avatar_uploaded VALUES ('a.png', 'd41d8cd98f00b204e9800998ecf8427e', 'iVBORw0KGgo=', 8, '2026-11-01 08:00:00');
INSERT INTO profile_profile (user, nickname, intro, lang_code) VALUES ('alice@example.org', 'Alice', '', 'en'),
  ('bob@example.org', 'Bob', '', 'de');
INSERT INTO share_fileshare (username, repo_id, path, token, ctime, view_cnt, s_type) VALUES
  ('alice@example.org', 'f690ea2c-fe4d-459a-ba1e-165cdc6df391', '/a.txt', 'tok1', '2026-11-01 08:05:00', 0, 'f');
INSERT INTO base_filecomment (author, comment, created_at, updated_at) VALUES
  ('bob@example.org', 'Looks good', '2026-11-01 09:00:00', '2026-11-01 09:00:00');
