curl -X POST https://megamsg.app/api/whatsapp/messages/send \
-H "Authorization: Bearer YOUR_TOKEN" \
-H "X-Instance-Id: YOUR_INSTANCE_ID" \
-H "Content-Type: application/json" \
-d '{
"phone_number": "+201234567890",
"type": "text",
"text": "Hello from MegaMsg! 🚀"
}'
