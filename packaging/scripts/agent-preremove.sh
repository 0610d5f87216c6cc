if [ "$(corral_removing "$@")" = yes ]; then
    corral_service_removing corral-agent.service
fi
