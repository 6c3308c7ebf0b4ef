-- wrk script: POST /v1/keys/verify with the caller key in $ADMIN and the key to check in $TARGET.
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("ADMIN")
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"key":"' .. os.getenv("TARGET") .. '"}'
