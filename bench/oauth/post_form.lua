-- A fixed form POST with Basic client authentication. Env: BASIC (base64 of id:secret), BODY.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. os.getenv("BASIC")
wrk.body = os.getenv("BODY")
